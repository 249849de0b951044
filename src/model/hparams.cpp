#include "model/hparams.h"

#include <cmath>

#include "core/error.h"

namespace velocity::model {

void Hparams::bad(const std::string& key, const std::string& what) const {
  fail("{}: metadata {}.{}: {}", file_.shards().at(0).path, arch_, key, what);
}

int64_t Hparams::count(const std::string& key) const {
  const gguf::Value* v = file_.find(arch_ + "." + key);
  if (!v) bad(key, "missing");
  if (!v->is_integer()) bad(key, "expected an integer");
  const int64_t n = v->as_int();
  if (n <= 0 || n > (int64_t{1} << 40)) bad(key, fmt::format("value {} out of range", n));
  return n;
}

int64_t Hparams::count(const std::string& key, int64_t fallback) const {
  return has(key) ? count(key) : fallback;
}

float Hparams::real(const std::string& key, float fallback) const {
  const gguf::Value* v = file_.find(arch_ + "." + key);
  if (!v) return fallback;
  if (!v->is_float() && !v->is_integer()) bad(key, "expected a number");
  const double d = v->as_double();
  if (!std::isfinite(d)) bad(key, "not finite");
  return static_cast<float>(d);
}

std::optional<std::string> Hparams::string(const std::string& key) const {
  const gguf::Value* v = file_.find(arch_ + "." + key);
  if (!v) return std::nullopt;
  if (v->type() != gguf::ValueType::STRING) bad(key, "expected a string");
  return v->as_string();
}

bool Hparams::flag(const std::string& key, bool fallback) const {
  const gguf::Value* v = file_.find(arch_ + "." + key);
  if (!v) return fallback;
  if (v->type() != gguf::ValueType::BOOL) bad(key, "expected a bool");
  return v->as_bool();
}

}  // namespace velocity::model
