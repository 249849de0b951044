#include "jinja_reference.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "tokenizer/chat_template.h"

namespace velocity::test {

static const char* kPython = "/usr/bin/python3";

static std::string script_path() { return std::string(VELOCITY_SOURCE_DIR) + "/tests/tokenizer/render_reference.py"; }

std::string reference_unavailable() {
  if (access(kPython, X_OK) != 0) return "/usr/bin/python3 is absent";
  std::string cmd = std::string(kPython) + " -c 'import jinja2' >/dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0) return "python3-jinja2 is not installed for /usr/bin/python3";
  return {};
}

std::vector<ReferenceResult> render_reference(const std::vector<ReferenceCase>& cases) {
  char path[] = "/tmp/velocity_jinja_cases_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) throw std::runtime_error("mkstemp failed");
  close(fd);
  {
    std::ofstream in(path, std::ios::binary);
    for (const auto& c : cases) {
      nlohmann::ordered_json line = {{"template", c.source}, {"context", c.context}};
      in << line.dump(-1, ' ', true) << "\n";
    }
  }
  std::string cmd = "VELOCITY_FIXED_TIME=" + std::to_string(kFixedTime) + " " + kPython + " " +
                    script_path() + " --batch < " + path;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) throw std::runtime_error("popen failed");
  std::string output;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) output.append(buf, n);
  pclose(pipe);
  std::remove(path);
  std::vector<ReferenceResult> results;
  std::istringstream lines(output);
  std::string line;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line);
    ReferenceResult r;
    r.ok = j.at("ok").get<bool>();
    if (r.ok) r.output = j.at("output").get<std::string>();
    else r.error = j.at("error").get<std::string>();
    results.push_back(std::move(r));
  }
  if (results.size() != cases.size())
    throw std::runtime_error("render_reference.py returned " + std::to_string(results.size()) + " results for " +
                             std::to_string(cases.size()) + " cases");
  return results;
}

std::string compare_with_reference(const ReferenceCase& c, const ReferenceResult& ref) {
  std::string ours, error;
  bool ok = true;
  try {
    jinja::RenderOptions options;
    options.fixed_time = kFixedTime;
    ChatTemplate t(c.source, options);
    ours = t.render(c.context);
  } catch (const velocity::Error& e) {
    ok = false;
    error = e.what();
  } catch (const std::exception& e) {
    return c.label + ": unexpected exception type: " + e.what();
  }
  if (ref.ok && !ok) return c.label + ": velocity raised \"" + error + "\"; Python rendered:\n" + ref.output;
  if (!ref.ok && ok) return c.label + ": Python raised \"" + ref.error + "\"; velocity rendered:\n" + ours;
  if (ref.ok && ours != ref.output)
    return c.label + ": output differs\n--- python:\n" + ref.output + "\n--- velocity:\n" + ours + "\n---";
  return {};
}

}  // namespace velocity::test
