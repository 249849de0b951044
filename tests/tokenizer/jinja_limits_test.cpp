// Hostile templates: every limit raises velocity::Error with a position instead of crashing,
// hanging or exhausting memory. Also regression tests for fuzzer findings.
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "tokenizer/chat_template.h"

using nlohmann::ordered_json;

namespace {

// Renders `source`; returns the error message, or "" when it rendered.
std::string render_error(const std::string& source, velocity::jinja::RenderOptions options = {}) {
  try {
    velocity::ChatTemplate t(source, options);
    t.render(ordered_json::object());
  } catch (const velocity::Error& e) {
    return e.what();
  }
  return {};
}

std::string repeat(const std::string& s, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

}  // namespace

TEST(JinjaLimits, DeepParenthesesAreAnError) {
  std::string e = render_error("{{ " + repeat("(", 100000) + "1" + repeat(")", 100000) + " }}");
  EXPECT_NE(e.find("nested too deeply"), std::string::npos) << e;
  EXPECT_EQ(e.rfind("template:1:", 0), 0u) << e;
}

TEST(JinjaLimits, DeepPrefixOperatorsAreAnError) {
  EXPECT_FALSE(render_error("{{ " + repeat("not ", 100000) + "1 }}").empty());
  EXPECT_FALSE(render_error("{{ " + repeat("-", 100000) + "1 }}").empty());
  EXPECT_FALSE(render_error("{{ " + repeat("[", 100000) + " }}").empty());
  EXPECT_FALSE(render_error("{{ 1" + repeat(" if 1 else 1", 100000) + " }}").empty());
  EXPECT_FALSE(render_error("{% for " + repeat("(", 100000) + "x in y %}{% endfor %}").empty());
}

TEST(JinjaLimits, LongOperatorChainsAreAnError) {
  EXPECT_FALSE(render_error("{{ 1" + repeat(" + 1", 100000) + " }}").empty());
  EXPECT_FALSE(render_error("{{ 'a'" + repeat(" | upper", 100000) + " }}").empty());
  EXPECT_FALSE(render_error("{{ x" + repeat(".a", 100000) + " }}").empty());
  // Moderate chains are fine.
  EXPECT_EQ(render_error("{{ 1" + repeat(" + 1", 150) + " }}"), "");
}

TEST(JinjaLimits, DeepStatementNestingIsAnError) {
  EXPECT_FALSE(render_error(repeat("{% if 1 %}", 100000) + repeat("{% endif %}", 100000)).empty());
  EXPECT_FALSE(render_error(repeat("{% for x in [1] %}", 50000)).empty());
}

TEST(JinjaLimits, OutputSizeIsBounded) {
  velocity::jinja::RenderOptions options;
  options.max_output_bytes = 1 << 20;
  std::string e = render_error("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", options);
  EXPECT_NE(e.find("output exceeds"), std::string::npos) << e;
  EXPECT_FALSE(render_error("{{ 'x' * 1000000000000 }}", options).empty());
  EXPECT_FALSE(render_error("{{ [1] * 1000000000000 }}", options).empty());
  EXPECT_FALSE(render_error("{{ 'x' * 9223372036854775807 }}", options).empty());
  EXPECT_FALSE(render_error("{% set s %}{% for i in range(100000) %}{{ 'y' * 100 }}{% endfor %}{% endset %}", options).empty());
}

TEST(JinjaLimits, WorkIsBounded) {
  velocity::jinja::RenderOptions options;
  options.max_steps = 1'000'000;
  std::string e = render_error("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", options);
  EXPECT_NE(e.find("work limit"), std::string::npos) << e;
}

TEST(JinjaLimits, RangeIsBoundedLikeTheSandbox) {
  EXPECT_NE(render_error("{{ range(100001) | length }}").find("Range too big"), std::string::npos);
  EXPECT_EQ(render_error("{{ range(100000) | length }}"), "");
  EXPECT_FALSE(render_error("{{ range(-9223372036854775807, 9223372036854775807) }}").empty());
}

TEST(JinjaLimits, MacroRecursionIsBounded) {
  std::string e = render_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
  EXPECT_NE(e.find("nested deeper"), std::string::npos) << e;
  // Deep expressions inside deep recursion stay within the evaluation depth limit.
  std::string deep = "{% macro f(n) %}{{ " + repeat("(", 150) + "f(n + 1)" + repeat(")", 150) + " }}{% endmacro %}{{ f(0) }}";
  EXPECT_FALSE(render_error(deep).empty());
}

TEST(JinjaLimits, SelfBuiltDeepValuesAreAnError) {
  std::string e = render_error(
      "{% set ns = namespace(x=[]) %}{% for i in range(5000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}");
  EXPECT_NE(e.find("nested deeper"), std::string::npos) << e;
  EXPECT_FALSE(render_error("{% set ns = namespace(x=1) %}{% for i in range(5000) %}{% set ns.x = dict(a=ns.x) %}{% endfor %}").empty());
}

TEST(JinjaLimits, ReferenceCyclesDoNotLeak) {
  // Run under LeakSanitizer in the ASan build.
  EXPECT_EQ(render_error("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns.me.me is defined }}"), "");
  EXPECT_EQ(render_error("{% macro m() %}{{ m is defined }}{% endmacro %}{{ m() }}"), "");
  EXPECT_EQ(render_error("{% for i in [1] %}{% macro m() %}{{ i }}{% endmacro %}{% set ns = namespace(f=m) %}{{ ns.f() }}{% endfor %}"), "");
}

TEST(JinjaLimits, InvalidUtf8AndControlBytesDoNotCrash) {
  std::string bad = "{{ '\xff\xfe' ~ '\xc3' }}{{ ['\xe2\x82'] }}{{ '\xf0\x9f\x98' | tojson }}\x00{{ 1 }}";
  bad.push_back('\0');
  velocity::ChatTemplate t(bad);
  std::string out = t.render(ordered_json::object());
  EXPECT_NE(out.find("\xff\xfe\xc3"), std::string::npos);
}

TEST(JinjaLimits, ErrorsCarryPositions) {
  std::string e = render_error("a\nb {{ x.y.z }}");
  EXPECT_EQ(e.rfind("template:2:", 0), 0u) << e;
  e = render_error("{% if true %}\n{% endfor %}");
  EXPECT_EQ(e.rfind("template:2:", 0), 0u) << e;
  EXPECT_NE(e.find("endfor"), std::string::npos) << e;
}
