// matmul / matmul_ids / get_rows (kernels.h): which kernel serves which tokens, the launch sizes,
// and the workspace. matmul_common.cuh describes the paths; this file only chooses among them.
//
//   F32 weights, F16/BF16 rows whose length is not a multiple of 64  -> generic (f32, every token)
//   every other weight: x converted once per call, then
//     decode tokens [0, n_decode)   -> decode kernel (64 tokens per launch; matmul_ids: one job
//                                      per (token, slot) pair, reading the expert id on the device)
//     prompt tokens                 -> prompt kernel (matmul_ids: routed on the device first)
// The launch sizes depend on the weight's shape and the device only (never on n_tokens), so a
// token's outputs do not depend on the tokens beside it.
#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "engine/cuda/matmul_common.cuh"

namespace velocity::engine::cuda {
namespace mm {
namespace {

[[noreturn]] void fail_matmul(const char* format, ...) {
  char message[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(message, sizeof message, format, args);
  va_end(args);
  throw_error(message);
}

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

template <class T>
T* device_alloc(int64_t count, const char* what) {
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, static_cast<size_t>(count) * sizeof(T));
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    fail_matmul("make_matmul_workspace: cannot allocate %lld bytes for %s on the GPU (%s)",
                static_cast<long long>(count * static_cast<int64_t>(sizeof(T))), what, cudaGetErrorString(e));
  }
  return static_cast<T*>(p);
}

Workspace& workspace_of(MatmulWorkspace& ws) {
  auto* w = dynamic_cast<Workspace*>(&ws);
  VELOCITY_CUDA_CHECK(w != nullptr, "the matmul workspace does not come from make_matmul_workspace");
  return *w;
}

// Uses the mma paths (else the generic kernel).
bool mma_path(const Weight& w) {
  if (w.type == DType::F32) return false;
  if (w.type == DType::F16 || w.type == DType::BF16) return w.n_in % kChunkK == 0;
  return true;
}

void check_weight(const Weight& w, const char* op) {
  const int name_len = static_cast<int>(w.name.size());
  if (!matmul_supports(w.type))
    fail_matmul("%s: weight '%.*s' has type %.*s, which the CUDA backend cannot multiply", op, name_len, w.name.data(),
                static_cast<int>(dtype_name(w.type).size()), dtype_name(w.type).data());
  if (w.n_in <= 0 || w.n_in % dtype_block_size(w.type) != 0 || w.n_out < 0 || w.n_mat < 1)
    fail_matmul("%s: weight '%.*s' has a bad shape (%lld x %lld x %lld)", op, name_len, w.name.data(),
                static_cast<long long>(w.n_in), static_cast<long long>(w.n_out), static_cast<long long>(w.n_mat));
  if (w.data == nullptr) fail_matmul("%s: weight '%.*s' has no data", op, name_len, w.name.data());
  const int64_t stride = weight_stride(w.type, w.n_in);
  if (has_row_layout(w.type) && (w.layout != WeightLayout::Cuda || w.stride != stride))
    fail_matmul(
        "%s: weight '%.*s' is not in the CUDA layout (%lld bytes per row, expected %lld: convert it with "
        "to_weight_layout at upload)",
        op, name_len, w.name.data(), static_cast<long long>(w.stride), static_cast<long long>(stride));
  if (!has_row_layout(w.type) && w.stride != stride)
    fail_matmul("%s: weight '%.*s' has %lld bytes per row, expected %lld", op, name_len, w.name.data(),
                static_cast<long long>(w.stride), static_cast<long long>(stride));
  if (mma_path(w) && (reinterpret_cast<uintptr_t>(w.data) & 15) != 0)
    fail_matmul("%s: weight '%.*s' is not 16-byte aligned in device memory", op, name_len, w.name.data());
}

WeightView view_of(const Weight& w) {
  WeightView v;
  v.data = w.data;
  v.stride = w.stride;
  v.mat_bytes = w.n_out * w.stride;
  v.n_out = static_cast<int>(w.n_out);
  v.n_mat = static_cast<int>(w.n_mat);
  v.n_in = static_cast<int>(w.n_in);
  v.rl = row_layout(w.type, w.n_in);
  return v;
}

ActView acts_of(const Workspace& ws) {
  ActView a;
  a.x16 = ws.x16;
  a.ldk = ws.ldk;
  a.inv_scale = ws.inv_scale;
  a.xs16 = ws.xs16;
  a.xs32 = ws.xs32;
  a.x8 = ws.x8;
  a.xd = ws.xd;
  a.bs32 = ws.bs32;
  return a;
}

// What the decode rows (< n_xs) need besides x16: the f32 sums of 16 and 32 (the f16 path of the
// formats with an offset), int8 values (a kI8 format's decode).
struct DecodeForms {
  bool sums = false, x8 = false;
};
void convert(const Workspace& ws, const WeightView& wv, const float* x, int64_t ldx, int64_t n_rows, int64_t n_xs,
             DecodeForms forms, cudaStream_t stream, const MatmulPrologue& pro = {}) {
  ConvertParams c;
  c.norm_w = pro.norm_w;
  c.norm_eps = pro.norm_eps;
  c.gate = pro.gate;
  c.ldgate = pro.ldgate;
  c.x = x;
  c.ldx = ldx;
  c.n_rows = static_cast<int>(n_rows);
  c.n_in = wv.n_in;
  c.k_pad = wv.rl.nc * kChunkK;
  c.n_xs = forms.sums ? static_cast<int>(n_xs) : 0;
  c.n_x8 = forms.x8 ? static_cast<int>(n_xs) : 0;
  c.x16 = ws.x16;
  c.ldk = ws.ldk;
  c.inv_scale = ws.inv_scale;
  c.xs16 = ws.xs16;
  c.xs32 = ws.xs32;
  c.x8 = ws.x8, c.xd = ws.xd, c.bs32 = ws.bs32;
  launch_convert(c, stream);
}

#define VELOCITY_MATMUL_MMA_TYPES(X) \
  X(Q8_0) X(Q4_0) X(Q4_1) X(Q5_0) X(Q5_1) X(MXFP4) X(Q2_K) X(Q3_K) X(Q4_K) X(Q5_K) X(Q6_K) X(F16) X(BF16)

#define VELOCITY_CASE(t) \
  static_assert(kI8<Fmt<DType::t>> == decode_q8(DType::t), "decode_q8 names the kI8 formats");
VELOCITY_MATMUL_MMA_TYPES(VELOCITY_CASE)
#undef VELOCITY_CASE

void dispatch_decode(DType type, const DecodeParams& p, dim3 grid, int max_tokens, bool pdl, cudaStream_t stream) {
  switch (type) {
#define VELOCITY_CASE(t) \
  case DType::t: launch_decode<DType::t>(p, grid, max_tokens, pdl, stream); return;
    VELOCITY_MATMUL_MMA_TYPES(VELOCITY_CASE)
#undef VELOCITY_CASE
    default: break;
  }
  fail_matmul("matmul: no decode kernel for this type");
}

void dispatch_prompt(DType type, const PromptParams& p, dim3 grid, cudaStream_t stream) {
  switch (type) {
#define VELOCITY_CASE(t) \
  case DType::t: launch_prompt<DType::t>(p, grid, stream); return;
    VELOCITY_MATMUL_MMA_TYPES(VELOCITY_CASE)
#undef VELOCITY_CASE
    default: break;
  }
  fail_matmul("matmul: no prompt kernel for this type");
}

int floor_log2(int v) {
  int l = 0;
  while ((2 << l) <= v) ++l;
  return l;
}

// Decode launch shape of a plain product: wr tiles per block along the rows, the rest of the 8
// warps splitting K, and `splits` blocks splitting K: enough blocks for two per SM where the rows
// alone give fewer, within the partial-sum scratch (sized for 64 tokens, so the choice does not
// depend on the call's token count). Balancing the waves instead (the split s minimising
// ceil(row_blocks s / 2 n_sm) / s) was measured on an H100 (session 5): no gain on the large
// shapes, 10-35% slower on 4096 -> 1024: the kernel is bound by bytes in flight per SM, not by
// whole waves (docs/NOTES.md).
struct DecodeShape {
  int wr = 8, wk_log2 = 0, splits = 1, row_blocks = 1;
};
// The shape with wr tiles a block along the rows and `splits` (0: the rule above) blocks along K,
// within the caps.
DecodeShape decode_shape(const Workspace& ws, const WeightView& wv, int n_iters, int wr, int64_t splits) {
  DecodeShape d;
  d.wr = wr;
  d.wk_log2 = floor_log2(8 / d.wr);
  d.row_blocks = static_cast<int>(ceil_div(ceil_div(wv.n_out, kTileRows), d.wr));
  int64_t s = splits > 0 ? splits : ceil_div(2 * int64_t{ws.n_sm}, d.row_blocks);
  s = std::min<int64_t>(s, std::max(1, n_iters >> d.wk_log2));
  s = std::min<int64_t>(s, kPartialFloats / (int64_t{kDecodeTokens} * d.row_blocks * d.wr * kTileRows));
  if (d.row_blocks > kCounters) s = 1;
  d.splits = static_cast<int>(std::max<int64_t>(1, s));
  return d;
}
DecodeShape plain_decode_shape(const Workspace& ws, const WeightView& wv, int n_iters) {
  const int rw = ws.tuning.rows_warps;
  return decode_shape(ws, wv, n_iters, rw == 1 || rw == 2 || rw == 4 ? rw : 8, ws.tuning.splits);
}

// The int8 decode (kI8 formats, about 2.5 times fewer instructions a weight) is bound by how
// full the one wave of blocks is, not by instructions: the rule above gives 4096 -> 14336 three
// K splits of 112 row blocks, 336 blocks for 264 slots (two per SM on an H100), and the last 72
// run alone. Here a weight fills at most one wave: splits floor(slots / row_blocks), and the rows
// per block (wr 8, 4 or 2; the rest of the 8 warps split K inside the block, which costs no
// partial sums) chosen for the most blocks within the wave, ties to the fewest K splits across
// blocks; more row blocks than slots: wr 8, no split. Kernel lab on an H100 (session 8, graph
// replay, one token): 4096 -> 14336 21.5 -> 19.0 us (wr 4, 224 blocks), 4096 -> 1024 8.0 -> 7.6
// (wr 2, 32 x 4), 14336 -> 4096 within 1% (wr 2, 128 x 2).
// `slots`: blocks in one wave. Each weight takes the shape it would have alone (so its results do
// not depend on the weights beside it): weights share a launch only if their wr agree.
int wave_rows_warps(const Workspace& ws, const WeightView& wv, int n_iters, int64_t slots) {
  int best_wr = 8;
  int64_t best_blocks = -1, best_splits = 0;
  for (int wr : {8, 4, 2}) {
    const DecodeShape d = decode_shape(ws, wv, n_iters, wr, std::max<int64_t>(1, slots / ceil_div(wv.n_out, kTileRows * wr)));
    const int64_t blocks = int64_t{d.row_blocks} * d.splits;
    if (blocks > slots) continue;
    if (blocks > best_blocks || (blocks == best_blocks && d.splits < best_splits))
      best_wr = wr, best_blocks = blocks, best_splits = d.splits;
  }
  return best_wr;
}
DecodeShape wave_decode_shape(const Workspace& ws, const WeightView& wv, int n_iters, int wr, int64_t slots) {
  const int64_t rb = ceil_div(ceil_div(wv.n_out, kTileRows), wr);
  return decode_shape(ws, wv, n_iters, wr, std::max<int64_t>(1, slots / rb));
}

// Whether a weight of this type takes the one-wave shapes (kI8 formats, VELOCITY_DECODE_WAVES=1,
// no lab override). Off by default until a model-level benchmark shows the gain: only the
// single products were measured (session 8; the device time ran out before the model run).
bool wave_shapes(const Workspace& ws, DType type) {
  return ws.waves && decode_q8(type) && ws.tuning.rows_warps == 0 && ws.tuning.splits == 0;
}
// The rows per decode block of a weight alone (a launch's parts must agree on it).
int decode_rows_warps(const Workspace& ws, const Weight& w) {
  const WeightView wv = view_of(w);
  if (wave_shapes(ws, w.type))
    return wave_rows_warps(ws, wv, static_cast<int>(ceil_div(wv.rl.nc, iter_chunks(w.type))), 2 * int64_t{ws.n_sm});
  return plain_decode_shape(ws, wv, 1).wr;
}

// Element counts of the workspace's buffers (make_matmul_workspace, matmul_workspace_bytes).
struct WorkspaceSizes {
  int64_t ldk, rows, x16, inv_scale, xs16, xs32, x8, xd, bs32, partial, counters, routing, pair_list;
  explicit WorkspaceSizes(int64_t max_rows, int64_t max_n_in)
      : ldk(round_up(max_n_in, 256)),
        rows(round_up(max_rows, 8)),
        x16(rows * ldk),
        inv_scale(rows),
        xs16(ldk / 16 * rows),
        xs32(ldk / 32 * rows),
        x8(rows * ldk),
        xd(ldk / 256 * rows),
        bs32(ldk / 32 * rows),
        partial(kMaxDecodeParts * kPartialFloats),
        counters(kMaxDecodeParts * kCounters),
        routing(kMaxExperts + 1),
        pair_list(rows) {}
  uint64_t bytes() const {
    return static_cast<uint64_t>(x16 * 2 + (inv_scale + xs16 + xs32 + partial) * 4 + x8 + xd * 4 + bs32 * 2 +
                                 counters * 4 + 2 * routing * 4 + pair_list * 4);
  }
};

}  // namespace

Workspace::Workspace(int64_t rows, int64_t n_in) {
  VELOCITY_CUDA(cudaGetDevice(&device));
  VELOCITY_CUDA(cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, device));
  VELOCITY_CUDA(cudaDeviceGetAttribute(&cc_major, cudaDevAttrComputeCapabilityMajor, device));
  const WorkspaceSizes sz(rows, n_in);
  const char* waves_env = std::getenv("VELOCITY_DECODE_WAVES");
  waves = waves_env != nullptr && std::strcmp(waves_env, "1") == 0;
  max_rows = rows;
  max_n_in = n_in;
  ldk = sz.ldk;
  ld_xs = sz.rows;
  x16 = device_alloc<__half>(sz.x16, "converted activations");
  inv_scale = device_alloc<float>(sz.inv_scale, "activation scales");
  xs16 = device_alloc<float>(sz.xs16, "activation sums");
  xs32 = device_alloc<float>(sz.xs32, "activation sums");
  x8 = device_alloc<int8_t>(sz.x8, "int8 activations");
  xd = device_alloc<float>(sz.xd, "int8 activation scales");
  bs32 = device_alloc<int16_t>(sz.bs32, "int8 activation sums");
  partial = device_alloc<float>(sz.partial, "split-K partial sums");
  counters = device_alloc<int>(sz.counters, "split-K counters");
  expert_off = device_alloc<int32_t>(sz.routing, "routing tables");
  tile_off = device_alloc<int32_t>(sz.routing, "routing tables");
  pair_list = device_alloc<int32_t>(sz.pair_list, "routing tables");
  // Zero before any kernel of any stream can use them: the counters must start at 0, and no
  // kernel reads the other buffers before writing them, but zeros keep stray reads finite.
  VELOCITY_CUDA(cudaMemset(counters, 0, sizeof(int) * kMaxDecodeParts * kCounters));
  VELOCITY_CUDA(cudaMemset(x16, 0, sizeof(__half) * static_cast<size_t>(ld_xs * ldk)));
  VELOCITY_CUDA(cudaDeviceSynchronize());
}

Workspace::~Workspace() {
  for (void* p : {static_cast<void*>(x16), static_cast<void*>(inv_scale), static_cast<void*>(xs16),
                  static_cast<void*>(xs32), static_cast<void*>(x8), static_cast<void*>(xd), static_cast<void*>(bs32),
                  static_cast<void*>(partial), static_cast<void*>(counters),
                  static_cast<void*>(expert_off), static_cast<void*>(tile_off), static_cast<void*>(pair_list)})
    if (p != nullptr) (void)cudaFree(p);  // never throws: the context may already be gone
}

int iter_chunks(DType type) {
  switch (type) {
#define VELOCITY_CASE(t) \
  case DType::t: return Fmt<DType::t>::kIterChunks;
    VELOCITY_MATMUL_MMA_TYPES(VELOCITY_CASE)
#undef VELOCITY_CASE
    default: return 1;
  }
}

}  // namespace mm

std::unique_ptr<MatmulWorkspace> make_matmul_workspace(int64_t max_rows, int64_t max_n_in) {
  if (max_rows <= 0 || max_n_in <= 0 || max_rows > (int64_t{1} << 24) || max_n_in > (int64_t{1} << 24))
    throw_error("make_matmul_workspace: sizes must be positive and below 2^24");
  return std::make_unique<mm::Workspace>(max_rows, max_n_in);
}

uint64_t matmul_workspace_bytes(int64_t max_rows, int64_t max_n_in) {
  if (max_rows <= 0 || max_n_in <= 0) return 0;
  return mm::WorkspaceSizes(max_rows, max_n_in).bytes();
}

void set_matmul_decode_tuning(MatmulWorkspace& ws, mm::DecodeTuning tuning) { mm::workspace_of(ws).tuning = tuning; }

namespace mm {
namespace {

void check_plain(const Workspace& ws, const Weight& w, const float* y, int64_t ldy, int64_t n_tokens) {
  check_weight(w, "matmul");
  if (w.n_mat != 1)
    fail_matmul("matmul: weight '%.*s' has %lld matrices; pass one (Weight::matrix)", static_cast<int>(w.name.size()),
                w.name.data(), static_cast<long long>(w.n_mat));
  if (n_tokens < 0 || n_tokens > ws.max_rows || w.n_in > ws.max_n_in)
    fail_matmul("matmul: %lld tokens of %lld inputs exceed the workspace (%lld x %lld)",
                static_cast<long long>(n_tokens), static_cast<long long>(w.n_in), static_cast<long long>(ws.max_rows),
                static_cast<long long>(ws.max_n_in));
  VELOCITY_CUDA_CHECK(y != nullptr && ldy >= w.n_out, "matmul: bad output");
}

// The decode products of a group of weights of one type and input length (1..kMaxDecodeParts,
// none empty) in one launch per 64 tokens, each part with its own launch shape.
void run_decode(Workspace& ws, std::span<const MatmulOut> group, int64_t n_decode, cudaStream_t stream) {
  const Weight& w0 = *group[0].w;
  DecodeParams p;
  p.w = view_of(w0);
  p.n_iters = static_cast<int>(ceil_div(p.w.rl.nc, iter_chunks(w0.type)));
  p.n_parts = static_cast<int>(group.size());
  int blocks = 0;
  // kI8 formats: one wave a weight, the rows per block chosen by the group's first weight (a
  // launch has one wr); the lab's tuning overrides either rule.
  const bool wave = wave_shapes(ws, w0.type);
  const int64_t slots = 2 * int64_t{ws.n_sm};
  const int wave_wr = decode_rows_warps(ws, w0);
  for (int i = 0; i < p.n_parts; ++i) {
    VELOCITY_CUDA_CHECK(decode_rows_warps(ws, *group[i].w) == wave_wr, "run_decode: one wr a launch");
    const DecodeShape shape = wave ? wave_decode_shape(ws, view_of(*group[i].w), p.n_iters, wave_wr, slots)
                                   : plain_decode_shape(ws, view_of(*group[i].w), p.n_iters);
    p.wr = shape.wr;  // the same for every part (the tuning's)
    p.wk_log2 = shape.wk_log2;
    DecodePart& part = p.part[i];
    part.data = group[i].w->data;
    part.ldy = group[i].ldy;
    part.n_out = static_cast<int>(group[i].w->n_out);
    part.row_blocks = shape.row_blocks;
    part.splits = shape.splits;
    part.block_end = blocks += shape.row_blocks * shape.splits;
    part.accumulate = group[i].accumulate;
    part.partial = ws.partial + int64_t{i} * kPartialFloats;
    part.counters = ws.counters + int64_t{i} * kCounters;
  }
  const ActView acts = acts_of(ws);
  for (int64_t t0 = 0; t0 < n_decode; t0 += kDecodeTokens) {  // the weights once per 64 tokens
    p.n_tok = static_cast<int>(std::min<int64_t>(kDecodeTokens, n_decode - t0));
    p.a = acts;
    p.a.x16 += t0 * ws.ldk;
    p.a.inv_scale += t0;
    p.a.xs16 += t0 * (ws.ldk / 16);
    p.a.xs32 += t0 * (ws.ldk / 32);
    p.a.x8 += t0 * ws.ldk;
    p.a.xd += t0 * (ws.ldk / 256);
    p.a.bs32 += t0 * (ws.ldk / 32);
    for (int i = 0; i < p.n_parts; ++i) p.part[i].y = group[i].y + t0 * group[i].ldy;
    dispatch_decode(w0.type, p, dim3(static_cast<unsigned>(blocks), 1, 1), p.n_tok, ws.cc_major >= 9 && t0 == 0,
                    stream);
  }
}

// The products of a group of weights (matmul's grouping: one type and input length, or one
// weight) on activations already converted (mma paths) or read as they are (generic).
void run_plain(Workspace& ws, std::span<const MatmulOut> group, const float* x, int64_t ldx, int64_t n_tokens,
               int64_t n_decode, cudaStream_t stream) {
  if (!mma_path(*group[0].w)) {
    for (const MatmulOut& o : group) {
      const Weight& w = *o.w;
      if (w.n_out == 0) continue;
      const WeightView wv = view_of(w);
      GenericParams g;
      g.w = w.data, g.stride = w.stride, g.mat_bytes = wv.mat_bytes, g.type = w.type;
      g.n_in = wv.n_in, g.n_out = wv.n_out, g.n_mat = 1;
      g.x = x, g.ldx = ldx, g.y = o.y, g.ldy = o.ldy, g.n_tok = static_cast<int>(n_tokens);
      g.accumulate = o.accumulate;
      launch_generic(g, stream);
    }
    return;
  }
  if (n_decode > 0) run_decode(ws, group, n_decode, stream);
  if (n_decode < n_tokens) {
    for (const MatmulOut& o : group) {
      const Weight& w = *o.w;
      PromptParams p;
      p.w = view_of(w);
      p.a = acts_of(ws);
      p.y = o.y;
      p.ldy = o.ldy;
      p.accumulate = o.accumulate;
      p.t0 = static_cast<int>(n_decode);
      p.t1 = static_cast<int>(n_tokens);
      const dim3 grid(static_cast<unsigned>(ceil_div(n_tokens - n_decode, kPromptTokens)),
                      static_cast<unsigned>(ceil_div(w.n_out, kPromptRows)), 1);
      dispatch_prompt(w.type, p, grid, stream);
    }
  }
}

}  // namespace
}  // namespace mm

void matmul(const Weight& w, const float* x, int64_t ldx, int64_t n_tokens, int64_t n_decode, float* y, int64_t ldy,
            MatmulWorkspace& workspace, cudaStream_t stream) {
  const MatmulOut out{&w, y, ldy, false};
  matmul(std::span<const MatmulOut>(&out, 1), x, ldx, n_tokens, n_decode, workspace, stream);
}

bool matmul_fuses(const Weight& w) { return matmul_supports(w.type) && mm::mma_path(w); }

bool matmul_decode_int8(DType type) { return mm::decode_q8(type); }

void matmul(std::span<const MatmulOut> outs, const float* x, int64_t ldx, int64_t n_tokens, int64_t n_decode,
            MatmulWorkspace& workspace, cudaStream_t stream, const MatmulPrologue& prologue) {
  using namespace mm;
  Workspace& ws = workspace_of(workspace);
  if (outs.empty()) return;
  const int64_t n_in = outs[0].w->n_in;
  bool convert_x = false;
  DecodeForms forms;
  for (const MatmulOut& o : outs) {
    check_plain(ws, *o.w, o.y, o.ldy, n_tokens);
    if (o.w->n_in != n_in)
      fail_matmul("matmul: the products of one call share their input, but '%.*s' takes %lld values, not %lld",
                  static_cast<int>(o.w->name.size()), o.w->name.data(), static_cast<long long>(o.w->n_in),
                  static_cast<long long>(n_in));
    convert_x = convert_x || mma_path(*o.w);
    if (mma_path(*o.w)) (decode_q8(o.w->type) ? forms.x8 : forms.sums) = true;
    if ((prologue.norm_w != nullptr || prologue.gate != nullptr) && !mma_path(*o.w))
      fail_matmul("matmul: '%.*s' takes the generic kernel, which reads x as it is: no prologue",
                  static_cast<int>(o.w->name.size()), o.w->name.data());
  }
  VELOCITY_CUDA_CHECK(prologue.gate == nullptr || prologue.norm_w == nullptr, "matmul: one prologue at a time");
  VELOCITY_CUDA_CHECK(x != nullptr && ldx >= n_in, "matmul: bad activations");
  if (n_tokens == 0) return;
  n_decode = n_decode < 0 ? 0 : (n_decode > n_tokens ? n_tokens : n_decode);
  // The converted x depends on n_in alone (its padding, rl.nc chunks of 64, too): one for all.
  if (convert_x) convert(ws, view_of(*outs[0].w), x, ldx, n_tokens, n_decode, forms, stream, prologue);
  // Consecutive products of one type on the mma paths share a decode launch (Q, K, V; gate, up).
  for (size_t i = 0; i < outs.size();) {
    if (outs[i].w->n_out == 0) {
      ++i;
      continue;
    }
    size_t j = i + 1;
    if (mma_path(*outs[i].w))
      while (j < outs.size() && j - i < kMaxDecodeParts && outs[j].w->type == outs[i].w->type && outs[j].w->n_out > 0 &&
             decode_rows_warps(ws, *outs[j].w) == decode_rows_warps(ws, *outs[i].w))
        ++j;
    run_plain(ws, outs.subspan(i, j - i), x, ldx, n_tokens, n_decode, stream);
    i = j;
  }
}

void matmul_ids(const Weight& w, const int32_t* ids, int64_t k, const float* x, int64_t ldx, bool x_per_slot,
                int64_t n_tokens, int64_t n_decode, float* y, int64_t ldy, MatmulWorkspace& workspace,
                cudaStream_t stream) {
  using namespace mm;
  Workspace& ws = workspace_of(workspace);
  check_weight(w, "matmul_ids");
  const int64_t n_pairs = n_tokens * k, x_rows = x_per_slot ? n_pairs : n_tokens;
  if (k < 1 || n_tokens < 0 || n_pairs > ws.max_rows || w.n_in > ws.max_n_in)
    fail_matmul("matmul_ids: %lld tokens x %lld slots of %lld inputs exceed the workspace (%lld x %lld)",
                static_cast<long long>(n_tokens), static_cast<long long>(k), static_cast<long long>(w.n_in),
                static_cast<long long>(ws.max_rows), static_cast<long long>(ws.max_n_in));
  if (w.n_mat > kMaxExperts)
    fail_matmul("matmul_ids: weight '%.*s' has %lld experts, more than the %d the CUDA kernels route",
                static_cast<int>(w.name.size()), w.name.data(), static_cast<long long>(w.n_mat), kMaxExperts);
  if (n_pairs > 65535)
    fail_matmul("matmul_ids: %lld (token, slot) pairs, more than 65535", static_cast<long long>(n_pairs));
  VELOCITY_CUDA_CHECK(ids != nullptr && x != nullptr && y != nullptr && ldx >= w.n_in && ldy >= w.n_out,
                      "matmul_ids: bad arguments");
  if (n_tokens == 0 || w.n_out == 0) return;
  n_decode = n_decode < 0 ? 0 : (n_decode > n_tokens ? n_tokens : n_decode);
  const WeightView wv = view_of(w);

  if (!mma_path(w)) {
    GenericParams g;
    g.w = w.data, g.stride = w.stride, g.mat_bytes = wv.mat_bytes, g.type = w.type;
    g.n_in = wv.n_in, g.n_out = wv.n_out, g.n_mat = wv.n_mat;
    g.x = x, g.ldx = ldx, g.y = y, g.ldy = ldy;
    g.ids = ids, g.k = static_cast<int>(k), g.x_per_slot = x_per_slot, g.n_pairs = static_cast<int>(n_pairs);
    launch_generic(g, stream);
    return;
  }

  convert(ws, wv, x, ldx, x_rows, x_per_slot ? n_decode * k : n_decode,
          DecodeForms{.sums = !decode_q8(w.type), .x8 = decode_q8(w.type)}, stream);
  const ActView acts = acts_of(ws);
  if (n_decode > 0) {
    // One job per decode (token, slot) pair; K split over the block's warps (a fixed split: the
    // largest power of two <= min(8, iterations)), 16 * (8 >> split) rows per block.
    DecodeParams p;
    p.w = wv;
    p.a = acts;
    p.n_iters = static_cast<int>(ceil_div(wv.rl.nc, iter_chunks(w.type)));
    p.wk_log2 = floor_log2(std::min(8, std::max(1, p.n_iters)));
    p.wr = 8 >> p.wk_log2;
    p.n_tok = 1;
    p.ids = ids;
    p.k = static_cast<int>(k);
    p.x_per_slot = x_per_slot;
    DecodePart& part = p.part[0];
    part.data = w.data;
    part.y = y;
    part.ldy = ldy;
    part.n_out = static_cast<int>(w.n_out);
    part.row_blocks = static_cast<int>(ceil_div(ceil_div(w.n_out, kTileRows), p.wr));
    part.block_end = part.row_blocks;
    const dim3 grid(static_cast<unsigned>(part.row_blocks), 1, static_cast<unsigned>(n_decode * k));
    dispatch_decode(w.type, p, grid, 1, ws.cc_major >= 9, stream);
  }
  if (n_decode < n_tokens) {
    const int p0 = static_cast<int>(n_decode * k), p1 = static_cast<int>(n_pairs);
    launch_route(ids, p0, p1, static_cast<int>(w.n_mat), ws, stream);
    PromptParams p;
    p.w = wv;
    p.a = acts;
    p.y = y;
    p.ldy = ldy;
    p.ids_mode = 1;
    p.pair_list = ws.pair_list;
    p.expert_off = ws.expert_off;
    p.tile_off = ws.tile_off;
    p.n_expert = static_cast<int>(w.n_mat);
    p.k = static_cast<int>(k);
    p.x_per_slot = x_per_slot;
    // Worst case: every expert's last tile partly filled.
    const int64_t n_prompt = p1 - p0,
                  max_tiles = ceil_div(n_prompt, kPromptTokens) + std::min<int64_t>(w.n_mat, n_prompt);
    const dim3 grid(static_cast<unsigned>(max_tiles), static_cast<unsigned>(ceil_div(w.n_out, kPromptRows)), 1);
    dispatch_prompt(w.type, p, grid, stream);
  }
}

void get_rows(const Weight& w, const int32_t* ids, int64_t n, float* out, int64_t ldo, cudaStream_t stream) {
  using namespace mm;
  // Quantised rows in the GGUF layout (an embedding uploaded as is) are read in place.
  const bool gguf_rows = has_row_layout(w.type) && w.layout != WeightLayout::Cuda;
  if (gguf_rows) {
    if (!matmul_supports(w.type) || w.n_in <= 0 || w.n_in % dtype_block_size(w.type) != 0 || w.data == nullptr ||
        w.stride != dtype_row_bytes(w.type, w.n_in))
      fail_matmul("get_rows: weight '%.*s' is neither in the CUDA layout nor in GGUF rows",
                  static_cast<int>(w.name.size()), w.name.data());
  } else {
    check_weight(w, "get_rows");
  }
  VELOCITY_CUDA_CHECK(ids != nullptr && out != nullptr && ldo >= w.n_in && n >= 0 && n < (int64_t{1} << 31),
                      "get_rows: bad arguments");
  if (n == 0) return;
  GetRowsParams p;
  p.w = w.data;
  p.stride = w.stride;
  p.n_rows = w.n_out * w.n_mat;
  p.type = w.type;
  p.n_in = static_cast<int>(w.n_in);
  p.row_layout = has_row_layout(w.type) && !gguf_rows;
  p.rl = row_layout(w.type, w.n_in);
  p.ids = ids;
  p.n = static_cast<int>(n);
  p.out = out;
  p.ldo = ldo;
  launch_get_rows(p, stream);
}

}  // namespace velocity::engine::cuda
