#include "model/forward.h"

#include "core/error.h"

namespace velocity::model {

ForwardPass::ForwardPass(std::vector<engine::Backend*> layer_backends, std::vector<engine::Backend*> backends,
                         std::vector<engine::Act> residuals, std::vector<float>* staging)
    : layer_backends_(std::move(layer_backends)),
      backends_(std::move(backends)),
      residuals_(std::move(residuals)),
      staging_(staging) {
  VELOCITY_CHECK(!backends_.empty() && residuals_.size() == backends_.size());
}

size_t ForwardPass::index(const engine::Backend& b) const {
  for (size_t i = 0; i < backends_.size(); ++i)
    if (backends_[i] == &b) return i;
  VELOCITY_CHECK(false, "backend {} is not one of the model's", b.name());
  return 0;
}

void ForwardPass::begin(engine::Backend& b) { current_ = index(b); }

engine::Backend& ForwardPass::to(engine::Backend& b) {
  const size_t next = index(b);
  if (next == current_) return b;
  engine::Act& from = residuals_[current_];
  engine::Act& into = residuals_[next];
  VELOCITY_CHECK(staging_ && static_cast<int64_t>(staging_->size()) >= from.n_rows * from.n_cols);
  backends_[current_]->read(from, staging_->data());
  b.write(into, staging_->data(), from.n_rows);
  current_ = next;
  return b;
}

}  // namespace velocity::model
