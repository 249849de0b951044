#!/usr/bin/env python3
"""Checks `velocity serve` on the GPU end to end (run on the GPU machine by device_run.sh).

  serve_check.py VELOCITY_BINARY DEMO_GGUF

1. Batching: 32 greedy chat requests sent together to a model on cuda:0 (32 slots) give the
   same text as the same requests sent one at a time (the kernels reduce in an order that does
   not depend on the batch).
2. Device fault: with VELOCITY_CUDA_FAULT_AFTER_STEPS set, the GPU model's next step hits an
   illegal address. Its request ends with an error (500, or an error event in the stream),
   /health turns 503 naming it, later requests to it are refused, and a CPU model served by the
   same process keeps answering.
3. Perplexity of the demo model's held-out text on cuda:0 equals the CPU's within 0.1%.

Exit status 0 when every check holds; each check prints one line.
"""
import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

BIN, DEMO = sys.argv[1], sys.argv[2]
failures = []


def check(ok, what):
    print(("PASS " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, path, body, timeout=120):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def start(args, env=None):
    port = free_port()
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    p = subprocess.Popen([BIN, "serve", "--port", str(port)] + args, stdout=log, stderr=subprocess.STDOUT,
                         env=dict(os.environ, **(env or {})))
    for _ in range(600):
        if p.poll() is not None:
            break
        try:
            status, _ = get(port, "/health")
            if status == 200:
                return p, port, log.name
        except OSError:
            pass
        time.sleep(0.1)
    p.kill()
    print(open(log.name).read())
    raise SystemExit("velocity serve did not come up")


def stop(p):
    p.terminate()
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()


def chat(port, model, i, max_tokens=48):
    return post(port, "/v1/chat/completions", {
        "model": model, "temperature": 0, "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": f"Tell me story number {i} about a {['king', 'ship', 'river', 'city'][i % 4]}."}]})


# 1. 32 concurrent greedy requests equal the same requests one at a time.
p, port, log = start(["-m", DEMO, "--name", "demo", "--device", "cuda:0", "--slots", "32", "--ctx", "256"])
try:
    alone = [chat(port, "demo", i) for i in range(32)]
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        together = list(pool.map(lambda i: chat(port, "demo", i), range(32)))
    ok = all(s == 200 for s, _ in alone + together)
    texts_alone = [b["choices"][0]["message"]["content"] for _, b in alone] if ok else []
    texts_together = [b["choices"][0]["message"]["content"] for _, b in together] if ok else []
    same = sum(a == b for a, b in zip(texts_alone, texts_together))
    check(ok and same == 32 and len(set(texts_alone)) > 1,
          f"serve cuda:0: 32 concurrent greedy requests equal the same requests one at a time ({same}/32 equal, "
          f"{len(set(texts_alone))} distinct texts)")
finally:
    stop(p)

# 2. A device fault stops the GPU model only.
config = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
config.write(f"""
[[model]]
name = "gpu"
path = "{DEMO}"
device = "cuda:0"
ctx = 256
slots = 2

[[model]]
name = "cpu"
path = "{DEMO}"
device = "cpu"
ctx = 256
slots = 2
""")
config.close()
p, port, log = start(["--config", config.name], env={"VELOCITY_CUDA_FAULT_AFTER_STEPS": "20"})
try:
    status, body = chat(port, "gpu", 0, max_tokens=64)
    check(status == 500 and "device failed" in json.dumps(body),
          f"device fault: the request in flight ends with 500 naming the fault (got {status}: {json.dumps(body)[:160]})")
    status, body = get(port, "/health")
    states = {m["name"]: m["state"] for m in body.get("models", [])}
    check(status == 503 and states.get("gpu") != "ready" and states.get("cpu") == "ready",
          f"device fault: /health is 503 and names the GPU model (got {status}, {states})")
    status, body = chat(port, "gpu", 1)
    check(status in (500, 503), f"device fault: a later request to the GPU model is refused (got {status})")
    status, body = chat(port, "cpu", 1)
    check(status == 200 and body["choices"][0]["message"]["content"] != "",
          f"device fault: the CPU model in the same process keeps serving (got {status})")
    check(p.poll() is None, "device fault: the server is still running")
finally:
    stop(p)
    print("".join(l for l in open(log) if "device" in l)[:2000], end="")

# 3. Perplexity on cuda:0 equals the CPU's within 0.1%.
heldout = os.path.join(os.path.dirname(DEMO), "heldout-sample.txt")
ppl = {}
for device in ("cpu", "cuda:0"):
    out = subprocess.run([BIN, "perplexity", "-m", DEMO, "-f", heldout, "--ctx", "256", "--device", device, "--json"],
                         capture_output=True, text=True, check=True).stdout
    ppl[device] = json.loads(out)["result"]["perplexity"]
rel = abs(ppl["cuda:0"] - ppl["cpu"]) / ppl["cpu"]
check(rel < 1e-3, f"perplexity: cuda:0 {ppl['cuda:0']:.5f}, cpu {ppl['cpu']:.5f} (relative difference {rel:.2e} < 1e-3)")

print(f"serve_check: {len(failures)} failure(s)")
sys.exit(1 if failures else 0)
