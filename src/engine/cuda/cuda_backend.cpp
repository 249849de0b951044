// CudaBackend: memory, uploads, the step (inputs, graphs, outputs) and the primitive ops, each a
// call into kernels.h on the backend's stream. See cuda_backend.h.
#include "engine/cuda/cuda_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "core/log.h"
#include "core/quant.h"
#include "engine/cuda/common.cuh"

namespace velocity::engine::cuda {

namespace {

// Decode batches are padded up to one of these sizes and captured once per size.
constexpr int64_t kGraphBuckets[] = {1, 2, 4, 8, 16, 32, 64};

int64_t round_up_ctx(int64_t n_ctx) { return (n_ctx + 15) / 16 * 16; }

int64_t graph_bucket(int64_t n) {
  for (int64_t b : kGraphBuckets)
    if (n <= b) return b;
  return 0;
}

std::string gigabytes(uint64_t bytes) { return fmt::format("{:.2f} GB", static_cast<double>(bytes) / 1e9); }

}  // namespace

CudaBackend::CudaBackend(int index) : index_(index) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0)
    fail("device cuda:{}: no CUDA GPU is visible (driver missing, or CUDA_VISIBLE_DEVICES hides it)", index);
  if (index < 0 || index >= count) fail("device cuda:{}: this machine has {} CUDA GPU(s) (cuda:0..cuda:{})", index, count, count - 1);
  VELOCITY_CUDA(cudaSetDevice(index));
  cudaDeviceProp props{};
  VELOCITY_CUDA(cudaGetDeviceProperties(&props, index));
  if (props.major < 8)
    fail("device cuda:{} ({}) has compute capability {}.{}; velocity's kernels need 8.0 (Ampere) or newer", index,
         props.name, props.major, props.minor);
  name_ = fmt::format("cuda:{} ({})", index, props.name);
  VELOCITY_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  for (int i = 0; i < 2; ++i) {
    VELOCITY_CUDA(cudaHostAlloc(reinterpret_cast<void**>(&staging_[i]), kStagingBytes, cudaHostAllocDefault));
    VELOCITY_CUDA(cudaEventCreateWithFlags(&staging_done_[i], cudaEventDisableTiming));
  }
  VELOCITY_CUDA(cudaEventCreateWithFlags(&inputs_copied_, cudaEventDisableTiming));
  if (const char* env = std::getenv("VELOCITY_CUDA_GRAPHS"); env && std::string_view(env) == "0") graphs_enabled_ = false;
  if (const char* env = std::getenv("VELOCITY_CUDA_FUSE"); env && std::string_view(env) == "0") fuse_ = false;
  if (const char* env = std::getenv("VELOCITY_CUDA_FAULT_AFTER_STEPS"); env && *env) fault_after_steps_ = std::atoll(env);
}

CudaBackend::~CudaBackend() {
  // Errors are ignored here: a faulted device still has to let the process exit.
  cudaSetDevice(index_);
  if (stream_) cudaStreamSynchronize(stream_);
  for (auto& [size, exec] : graphs_) cudaGraphExecDestroy(exec);
  for (void* p : allocations_) cudaFree(p);
  for (int i = 0; i < 2; ++i) {
    if (staging_[i]) cudaFreeHost(staging_[i]);
    if (staging_done_[i]) cudaEventDestroy(staging_done_[i]);
  }
  if (inputs_copied_) cudaEventDestroy(inputs_copied_);
  if (h_inputs_) cudaFreeHost(h_inputs_);
  if (h_logits_) cudaFreeHost(h_logits_);
  if (h_tokens_out_) cudaFreeHost(h_tokens_out_);
  if (stream_) cudaStreamDestroy(stream_);
}

std::optional<uint64_t> CudaBackend::free_bytes() const {
  size_t free = 0, total = 0;
  VELOCITY_CUDA(cudaSetDevice(index_));
  VELOCITY_CUDA(cudaMemGetInfo(&free, &total));
  return free;
}

uint64_t CudaBackend::weight_bytes(DType type, std::span<const int64_t> shape) const {
  if (shape.empty()) return 0;
  int64_t rows = 1;
  for (size_t i = 1; i < shape.size(); ++i) rows *= shape[i];
  if (shape.size() == 1) return static_cast<uint64_t>(shape[0]) * 4;
  return static_cast<uint64_t>(rows) * static_cast<uint64_t>(weight_stride(type, shape[0]));
}

namespace {
// The cache types this backend stores, and head dims of whole blocks: a clear Error (as the CPU
// backend gives) before anything sizes or allocates the cache.
void check_cache_types(const StepShape& s) {
  for (DType t : {s.cache_type_k, s.cache_type_v})
    if (!kv_cache_supports(t))
      fail("KV cache type {} is not supported by the CUDA backend (f32, f16, q8_0, q4_0, q4_1, q5_1)", dtype_name(t));
  for (auto [type, dim, which] : {std::tuple{s.cache_type_k, s.head_dim_k, "K"}, std::tuple{s.cache_type_v, s.head_dim_v, "V"}})
    if (dim % dtype_block_size(type) != 0)
      fail("KV cache: {} head dim {} is not a multiple of the {} block size {}", which, dim, dtype_name(type),
           dtype_block_size(type));
}
}  // namespace

uint64_t CudaBackend::reserve_bytes(const StepShape& s) const {
  if (s.n_layer > 0) check_cache_types(s);  // the memory check asks before reserve()
  const int64_t max_in = std::max({s.n_embd, s.n_head * s.head_dim_v, s.n_ff, s.n_ff_expert});
  const int64_t max_rows = s.max_tokens * std::max<int64_t>(1, s.n_expert_used);
  StepShape padded = s;
  padded.n_ctx = round_up_ctx(s.n_ctx);
  uint64_t bytes = kv_cache_bytes(padded) + block_scratch_bytes(s);
  bytes += matmul_workspace_bytes(max_rows, max_in);
  if (s.n_layer > 0) bytes += attention_workspace_bytes(s.max_tokens, s.n_head, padded.n_ctx, s.head_dim_v);
  if (s.n_expert > 0) bytes += static_cast<uint64_t>(max_rows * (2 * s.n_ff_expert + s.n_embd)) * 4;
  bytes += static_cast<uint64_t>(4 * s.max_tokens + s.max_logits) * 4;  // step inputs, output tokens
  return bytes;
}

void* CudaBackend::device_alloc(uint64_t bytes, std::string_view what) {
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, std::max<uint64_t>(bytes, 256));
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // clear it: out of memory is not sticky
    fail("{}: out of GPU memory allocating {} for {} ({} already allocated by this model, {} free); use a smaller "
         "--ctx or --slots, a quantised KV cache (--cache-type-k q8_0 --cache-type-v q8_0), or a smaller model",
         name_, gigabytes(bytes), what, gigabytes(allocated_), gigabytes(free_bytes().value_or(0)));
  }
  VELOCITY_CUDA(e);
  allocations_.push_back(p);
  allocated_ += bytes;
  return p;
}

bool CudaBackend::supports(Feature f) const {
  switch (f) {
    case Feature::AttentionSinks:
    case Feature::SlidingWindow:
    case Feature::YarnRope:
    case Feature::AttentionOutputBias:
    case Feature::ExpertBiases:
    case Feature::ClampedSwiglu: return true;
    default: return false;
  }
}

// --- memory -----------------------------------------------------------------------------------

Weight CudaBackend::upload(std::string_view name, DType type, std::span<const int64_t> shape, const uint8_t* bytes) {
  if (shape.empty() || shape.size() > 3) fail("{}: {} dimensions; the engine takes 1 to 3", name, shape.size());
  VELOCITY_CUDA(cudaSetDevice(index_));
  Weight w;
  w.name = name;
  w.type = type;
  w.n_in = shape[0];
  w.n_out = shape.size() > 1 ? shape[1] : 1;
  w.n_mat = shape.size() > 2 ? shape[2] : 1;
  w.device = device();
  if (!dtype_info(type).has_reference) fail("{}: weight type {} is not supported by the CUDA backend", name, dtype_name(type));
  w.row_bytes = dtype_row_bytes(type, w.n_in);
  if (shape.size() == 1 || name.ends_with(".bias")) {
    // Norm weights, biases, rope factors: F32 vectors (per-expert biases [Fe, E] of gpt-oss: a
    // row per expert), as the CPU backend reads them.
    const int64_t n_rows = w.n_out * w.n_mat;
    std::vector<float> f(static_cast<size_t>(w.n_in * n_rows));
    for (int64_t r = 0; r < n_rows; ++r) dequantize_row(type, bytes + r * w.row_bytes, f.data() + r * w.n_in, w.n_in);
    auto* d = static_cast<uint8_t*>(device_alloc(static_cast<uint64_t>(f.size()) * 4, name));
    VELOCITY_CUDA(cudaMemcpyAsync(d, f.data(), f.size() * 4, cudaMemcpyHostToDevice, stream_));
    VELOCITY_CUDA(cudaStreamSynchronize(stream_));
    w.type = DType::F32;
    w.row_bytes = w.stride = w.n_in * 4;
    w.data = d;
    return w;
  }
  if (!matmul_supports(type)) fail("{}: weight type {} has no CUDA matmul kernel", name, dtype_name(type));
  w.layout = WeightLayout::Cuda;
  w.stride = weight_stride(type, w.n_in);
  const int64_t n_rows = w.n_out * w.n_mat;
  auto* d = static_cast<uint8_t*>(device_alloc(static_cast<uint64_t>(n_rows * w.stride), name));
  // Rows in chunks through the two pinned buffers: converting one while the other is copied.
  const int64_t rows_per_chunk = std::max<int64_t>(1, static_cast<int64_t>(kStagingBytes) / std::max(w.stride, w.row_bytes));
  VELOCITY_CHECK(rows_per_chunk * w.stride <= static_cast<int64_t>(kStagingBytes), "{}: a row of {} bytes does not fit the staging buffer", name, w.stride);
  for (int64_t r = 0; r < n_rows; r += rows_per_chunk) {
    const int64_t n = std::min(rows_per_chunk, n_rows - r);
    const int b = staging_next_;
    staging_next_ ^= 1;
    VELOCITY_CUDA(cudaEventSynchronize(staging_done_[b]));
    to_weight_layout(type, w.n_in, n, bytes + r * w.row_bytes, staging_[b]);
    VELOCITY_CUDA(cudaMemcpyAsync(d + r * w.stride, staging_[b], static_cast<size_t>(n * w.stride), cudaMemcpyHostToDevice,
                                  stream_));
    VELOCITY_CUDA(cudaEventRecord(staging_done_[b], stream_));
  }
  w.data = d;
  return w;
}

Act CudaBackend::alloc(int64_t capacity, int64_t n_cols) {
  Act a;
  a.data = static_cast<float*>(device_alloc(static_cast<uint64_t>(capacity * n_cols) * sizeof(float), "activations"));
  a.capacity = capacity;
  a.n_cols = n_cols;
  a.device = device();
  return a;
}

MoeRoute CudaBackend::alloc_route(int64_t max_tokens, int64_t k) {
  MoeRoute r;
  r.ids = static_cast<int32_t*>(device_alloc(static_cast<uint64_t>(max_tokens * k) * sizeof(int32_t), "MoE routes"));
  r.weights = static_cast<float*>(device_alloc(static_cast<uint64_t>(max_tokens * k) * sizeof(float), "MoE routes"));
  r.k = k;
  return r;
}

void CudaBackend::reserve(const StepShape& shape) {
  VELOCITY_CHECK(shape.max_tokens > 0 && shape.max_logits > 0 && shape.max_logits <= shape.max_tokens &&
                 shape.n_embd > 0 && shape.n_vocab > 0);
  VELOCITY_CUDA(cudaSetDevice(index_));
  VELOCITY_CUDA(cudaStreamSynchronize(stream_));  // the uploads are done
  shape_ = shape;
  const StepShape& s = shape_;
  check_cache_types(s);

  // The KV cache first: it is the part a user sizes with --ctx / --slots / cache types.
  kv_.assign(static_cast<size_t>(s.n_layer), KvLayer{});
  std::vector<int32_t> layers = s.kv_layers;
  if (layers.empty())
    for (int32_t il = 0; il < s.n_layer; ++il) layers.push_back(il);
  for (int32_t il : layers) {
    KvLayer& c = kv_[il];
    c.type_k = s.cache_type_k;
    c.type_v = s.cache_type_v;
    c.n_slots = s.n_slots;
    // Rows of a (slot, head) are a multiple of 16 positions apart, so every run starts on a 16-byte
    // boundary whatever the row size (the fast attention kernels copy 16 bytes at a time);
    // positions past n_ctx are never used.
    c.n_ctx = round_up_ctx(s.n_ctx);
    c.n_head_kv = s.n_head_kv;
    c.head_dim_k = s.head_dim_k;
    c.head_dim_v = s.head_dim_v;
    const uint64_t k_bytes = static_cast<uint64_t>(c.n_slots * c.n_head_kv * c.n_ctx * c.k_row_bytes());
    const uint64_t v_bytes = static_cast<uint64_t>(c.n_slots * c.n_head_kv * c.n_ctx * c.v_row_bytes());
    const std::string what = fmt::format("the KV cache of layer {} ({} slots x {} positions)", il, s.n_slots, s.n_ctx);
    c.k = static_cast<uint8_t*>(device_alloc(k_bytes, what));
    c.v = static_cast<uint8_t*>(device_alloc(v_bytes, what));
  }

  const int64_t max_in = std::max({s.n_embd, s.n_head * s.head_dim_v, s.n_ff, s.n_ff_expert});
  const int64_t max_rows = s.max_tokens * std::max<int64_t>(1, s.n_expert_used);
  matmul_ws_ = make_matmul_workspace(max_rows, max_in);
  if (!layers.empty()) attention_ws_ = make_attention_workspace(s.max_tokens, s.n_head, round_up_ctx(s.n_ctx), s.head_dim_v);
  reserve_blocks();
  if (s.n_expert > 0) {
    moe_gate_ = alloc(max_rows, s.n_ff_expert);
    moe_up_ = alloc(max_rows, s.n_ff_expert);
    moe_out_ = alloc(max_rows, s.n_embd);
  }

  const int64_t t = s.max_tokens;
  VELOCITY_CUDA(cudaHostAlloc(reinterpret_cast<void**>(&h_inputs_), static_cast<size_t>(4 * t) * sizeof(int32_t),
                              cudaHostAllocDefault));
  auto* d = static_cast<int32_t*>(device_alloc(static_cast<uint64_t>(4 * t) * sizeof(int32_t), "step inputs"));
  d_tokens_ = d;
  d_positions_ = d + t;
  d_seq_ids_ = d + 2 * t;
  d_output_rows_ = d + 3 * t;
  if (s.has_output) {
    VELOCITY_CUDA(cudaHostAlloc(reinterpret_cast<void**>(&h_logits_),
                                static_cast<size_t>(s.max_logits * s.n_vocab) * sizeof(float), cudaHostAllocDefault));
    VELOCITY_CUDA(cudaHostAlloc(reinterpret_cast<void**>(&h_tokens_out_), static_cast<size_t>(s.max_logits) * sizeof(int32_t),
                                cudaHostAllocDefault));
    d_tokens_out_ = static_cast<int32_t*>(device_alloc(static_cast<uint64_t>(s.max_logits) * sizeof(int32_t), "step outputs"));
  }
  outputs_.reserve(static_cast<size_t>(s.max_logits));
  VELOCITY_CUDA(cudaStreamSynchronize(stream_));
}

void CudaBackend::write(Act& dst, const float* src, int64_t n_rows) {
  VELOCITY_CHECK(n_rows >= 0 && n_rows <= dst.capacity && dst.device == device());
  dst.n_rows = n_rows;
  VELOCITY_CUDA(cudaMemcpyAsync(dst.data, src, static_cast<size_t>(n_rows * dst.n_cols) * sizeof(float),
                                cudaMemcpyHostToDevice, stream_));
  // `src` may be reused when this returns.
  VELOCITY_CUDA(cudaStreamSynchronize(stream_));
}

void CudaBackend::read(const Act& src, float* dst) {
  VELOCITY_CHECK(src.device == device());
  VELOCITY_CUDA(cudaMemcpyAsync(dst, src.data, static_cast<size_t>(src.n_rows * src.n_cols) * sizeof(float),
                                cudaMemcpyDeviceToHost, stream_));
  VELOCITY_CUDA(cudaStreamSynchronize(stream_));
}

void CudaBackend::synchronize() { VELOCITY_CUDA(cudaStreamSynchronize(stream_)); }

void CudaBackend::seq_copy(int32_t src_seq, int32_t dst_seq, int64_t n_positions) {
  VELOCITY_CHECK(src_seq >= 0 && src_seq < shape_.n_slots && dst_seq >= 0 && dst_seq < shape_.n_slots &&
                 n_positions >= 0 && n_positions <= shape_.n_ctx);
  for (const KvLayer& c : kv_)
    if (c.k) kv_copy_sequence(c, src_seq, dst_seq, n_positions, stream_);
}

// --- the step ---------------------------------------------------------------------------------

void CudaBackend::begin_step(const Batch& batch) {
  check_batch(batch);  // sets step_tokens_, step_outputs_ for the real batch
  const int64_t n = batch.size();
  n_real_tokens_ = n;
  n_real_outputs_ = step_outputs_;
  outputs_.clear();
  int64_t n_decode_outputs = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (batch.outputs[i] == Output::None) continue;
    outputs_.push_back(batch.outputs[i]);
    if (i < batch.n_decode) ++n_decode_outputs;
  }
  // A decode step whose every token wants an output: padded to a bucket and captured. Only when
  // this backend runs the whole step (embedding to logits): in a placement over several devices
  // the residual arrives from another backend with the batch's own row count, and there is no
  // run_step to replay (session 4's hybrid test failed with "rope over 3 rows in a step of 4").
  const bool decode_only = batch.n_decode == n && n_decode_outputs == n;
  const bool whole_step = shape_.has_embedding && shape_.has_output;
  const int64_t bucket = decode_only && whole_step ? graph_bucket(n) : 0;
  graph_step_ = graphs_enabled_ && bucket > 0 && bucket <= shape_.max_tokens && bucket <= shape_.max_logits &&
                !graph_failed_[bucket];
  const int64_t padded = graph_step_ ? bucket : n;

  const int64_t t = shape_.max_tokens;
  int32_t* tokens = h_inputs_;
  int32_t* positions = h_inputs_ + t;
  int32_t* seqs = h_inputs_ + 2 * t;
  int32_t* rows = h_inputs_ + 3 * t;
  // The previous step's copy from these pinned buffers must be done before they are rewritten.
  VELOCITY_CUDA(cudaEventSynchronize(inputs_copied_));
  int64_t n_rows = 0;
  for (int64_t i = 0; i < padded; ++i) {
    const bool real = i < n;
    tokens[i] = real ? batch.tokens[i] : 0;
    positions[i] = real ? batch.positions[i] : 0;
    seqs[i] = real ? batch.seq_ids[i] : -1;
    if (!real || batch.outputs[i] != Output::None) rows[n_rows++] = static_cast<int32_t>(i);
  }
  VELOCITY_CUDA(cudaMemcpyAsync(d_tokens_, h_inputs_, static_cast<size_t>(4 * t) * sizeof(int32_t),
                                cudaMemcpyHostToDevice, stream_));
  VELOCITY_CUDA(cudaEventRecord(inputs_copied_, stream_));
  step_tokens_ = padded;
  step_outputs_ = n_rows;
  n_decode_ = graph_step_ ? padded : batch.n_decode;
  n_decode_outputs_ = graph_step_ ? padded : n_decode_outputs;
}

void CudaBackend::run_step(FunctionRef<void()> ops) {
  VELOCITY_CUDA(cudaSetDevice(index_));
  if (fault_after_steps_ >= 0 && steps_run_++ == fault_after_steps_) inject_fault(stream_);
  if (!graph_step_) {
    ops();
    return;
  }
  const int64_t bucket = step_tokens_;
  auto it = graphs_.find(bucket);
  if (it == graphs_.end()) {
    cudaGraph_t graph = nullptr;
    VELOCITY_CUDA(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    try {
      ops();
    } catch (...) {
      cudaStreamEndCapture(stream_, &graph);
      if (graph) cudaGraphDestroy(graph);
      cudaGetLastError();
      throw;
    }
    VELOCITY_CUDA(cudaStreamEndCapture(stream_, &graph));
    cudaGraphExec_t exec = nullptr;
    const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) {
      // Run this size eagerly from now on; the step itself still has to happen.
      cudaGetLastError();
      graph_failed_[bucket] = true;
      ops();
      return;
    }
    it = graphs_.emplace(bucket, exec).first;
  }
  VELOCITY_CUDA(cudaGraphLaunch(it->second, stream_));
  ++graph_replays_;
}

StepOutput CudaBackend::read_output() {
  StepOutput out;
  out.n_rows = n_real_outputs_;
  out.n_vocab = shape_.n_vocab;
  out.logits = h_logits_;
  out.tokens = h_tokens_out_;
  if (n_real_outputs_ > 0) {
    VELOCITY_CHECK(shape_.has_output, "read_output on a backend without the output head");
    const int64_t v = shape_.n_vocab;
    bool want_tokens = false;
    for (int64_t j = 0; j < n_real_outputs_; ++j) {
      if (outputs_[j] == Output::Token) {
        want_tokens = true;
        continue;
      }
      VELOCITY_CUDA(cudaMemcpyAsync(h_logits_ + j * v, scratch_.logits.data + j * v, static_cast<size_t>(v) * sizeof(float),
                                    cudaMemcpyDeviceToHost, stream_));
    }
    if (want_tokens) {
      argmax_rows(scratch_.logits.data, v, n_real_outputs_, v, d_tokens_out_, stream_);
      VELOCITY_CUDA(cudaMemcpyAsync(h_tokens_out_, d_tokens_out_, static_cast<size_t>(n_real_outputs_) * sizeof(int32_t),
                                    cudaMemcpyDeviceToHost, stream_));
    }
  }
  VELOCITY_CUDA(cudaStreamSynchronize(stream_));
  return out;
}

// --- ops --------------------------------------------------------------------------------------

int64_t CudaBackend::decode_rows(int64_t n_rows) const {
  if (n_rows == step_tokens_) return n_decode_;
  if (n_rows == step_outputs_) return n_decode_outputs_;
  return 0;
}

void CudaBackend::check_act(const Act& a, std::string_view what) const {
  VELOCITY_CHECK(a.device == device() && a.data != nullptr, "{} is not an activation of {}", what, name_);
}

void CudaBackend::embed(const Weight& table, Act& out) {
  VELOCITY_CHECK(table.n_in == out.n_cols && table.device == device());
  check_act(out, "embed output");
  out.n_rows = step_tokens_;
  get_rows(table, d_tokens_, step_tokens_, out.data, out.n_cols, stream_);
}

void CudaBackend::rms_norm(const Act& x, const Weight& w, float eps, Act& out) {
  VELOCITY_CHECK(out.n_cols == x.n_cols && out.capacity >= x.n_rows);
  VELOCITY_CHECK(!w.present() || (w.type == DType::F32 && w.n_in == x.n_cols && w.device == device()));
  out.n_rows = x.n_rows;
  cuda::rms_norm(x.data, x.n_cols, reinterpret_cast<const float*>(w.data), eps, x.n_rows, x.n_cols, out.data,
                 out.n_cols, stream_);
}

void CudaBackend::rms_norm_heads(Act& x, int64_t head_dim, const Weight& w, float eps) {
  VELOCITY_CHECK(x.n_cols % head_dim == 0 && w.type == DType::F32 && w.n_in == head_dim && w.device == device());
  cuda::rms_norm_heads(x.data, x.n_cols, x.n_rows, x.n_cols / head_dim, head_dim, reinterpret_cast<const float*>(w.data),
                       eps, stream_);
}

void CudaBackend::matmul(const Weight& w, const Act& x, Act& y) {
  const Weight* const one_w[] = {&w};
  Act* const one_y[] = {&y};
  matmuls(x, one_w, one_y);
}

void CudaBackend::matmuls(const Act& x, std::span<const Weight* const> ws, std::span<Act* const> ys) {
  products(x, ws, ys, {}, false);
}

void CudaBackend::products(const Act& x, std::span<const Weight* const> ws, std::span<Act* const> ys,
                           const cuda::MatmulPrologue& prologue, bool accumulate) {
  VELOCITY_CHECK(ws.size() == ys.size());
  cuda::MatmulOut outs[4];  // a decode step allocates nothing
  VELOCITY_CHECK(ws.size() <= std::size(outs));
  for (size_t i = 0; i < ws.size(); ++i) {
    const Weight& w = *ws[i];
    Act& y = *ys[i];
    if (w.n_in != x.n_cols || w.n_out != y.n_cols || w.n_mat != 1)
      fail("matmul {}: weight [{} -> {}] x{} with activations of {} columns into {} columns", w.name, w.n_in, w.n_out,
           w.n_mat, x.n_cols, y.n_cols);
    VELOCITY_CHECK(w.device == device() && w.layout == WeightLayout::Cuda, "matmul {}: weight on {}", w.name,
                   w.device.to_string());
    VELOCITY_CHECK(y.capacity >= x.n_rows);
    y.n_rows = x.n_rows;
    outs[i] = {&w, y.data, y.n_cols, accumulate};
  }
  cuda::matmul(std::span<const cuda::MatmulOut>(outs, ws.size()), x.data, x.n_cols, x.n_rows, decode_rows(x.n_rows),
               *matmul_ws_, stream_, prologue);
}

bool CudaBackend::fusable(const Weight& norm, std::initializer_list<const Weight*> ws) const {
  if (!fuse_ || !norm.present() || norm.type != DType::F32) return false;
  for (const Weight* w : ws)
    if (!cuda::matmul_fuses(*w)) return false;
  return true;
}

void CudaBackend::attention_block(const AttentionLayer& layer, const AttentionParams& p, Act& x) {
  if (!fusable(layer.norm, {&layer.wq, &layer.wk, &layer.wv, &layer.wo})) return Backend::attention_block(layer, p, x);
  VELOCITY_CHECK(layer.norm.n_in == x.n_cols && layer.norm.device == device());
  const int64_t n = x.n_rows;
  BlockScratch& s = scratch_;
  const Weight* const qkv[] = {&layer.wq, &layer.wk, &layer.wv};
  Act* const qkv_out[] = {&s.q, &s.k, &s.v};
  for (Act* a : qkv_out) VELOCITY_CHECK(a->capacity >= n);
  cuda::MatmulPrologue norm;
  norm.norm_w = reinterpret_cast<const float*>(layer.norm.data);
  norm.norm_eps = p.norm_eps;
  products(x, qkv, qkv_out, norm, false);
  if (layer.bq.present()) add_bias(s.q, layer.bq);
  if (layer.bk.present()) add_bias(s.k, layer.bk);
  if (layer.bv.present()) add_bias(s.v, layer.bv);
  if (layer.q_norm.present()) rms_norm_heads(s.q, p.head_dim_k, layer.q_norm, p.norm_eps);
  if (layer.k_norm.present()) rms_norm_heads(s.k, p.head_dim_k, layer.k_norm, p.norm_eps);
  if (p.rope.type != RopeType::None) rope_qk(s.q, s.k, p.head_dim_k, p.rope);
  VELOCITY_CHECK(s.attn.capacity >= n);
  s.attn.n_rows = n;
  attention(p, s.q, s.k, s.v, s.attn);
  const Weight* const wo[] = {&layer.wo};
  Act* const out[] = {&x};
  products(s.attn, wo, out, {}, true);  // x += attn wo
  if (layer.bo.present()) add_bias(x, layer.bo);
}

void CudaBackend::ffn_block(const FfnLayer& layer, float eps, Act& x) {
  if (!fusable(layer.norm, {&layer.gate, &layer.up, &layer.down})) return Backend::ffn_block(layer, eps, x);
  VELOCITY_CHECK(layer.norm.n_in == x.n_cols && layer.norm.device == device());
  const int64_t n = x.n_rows;
  BlockScratch& s = scratch_;
  Act gate = s.gate, up = s.up;  // views with this layer's width
  gate.n_cols = up.n_cols = layer.gate.n_out;
  VELOCITY_CHECK(gate.capacity >= n && up.capacity >= n);
  const Weight* const gate_up[] = {&layer.gate, &layer.up};
  Act* const gate_up_out[] = {&gate, &up};
  cuda::MatmulPrologue norm;
  norm.norm_w = reinterpret_cast<const float*>(layer.norm.data);
  norm.norm_eps = eps;
  products(x, gate_up, gate_up_out, norm, false);
  cuda::MatmulPrologue swiglu;  // down's input: silu(gate) * up
  swiglu.gate = gate.data;
  swiglu.ldgate = gate.n_cols;
  const Weight* const down[] = {&layer.down};
  Act* const out[] = {&x};
  products(up, down, out, swiglu, true);  // x += down(silu(gate) * up)
}

void CudaBackend::add_bias(Act& y, const Weight& b) {
  VELOCITY_CHECK(b.type == DType::F32 && b.n_in == y.n_cols && b.device == device());
  cuda::add_bias(y.data, y.n_cols, reinterpret_cast<const float*>(b.data), y.n_rows, y.n_cols, stream_);
}

namespace {
// The rope kernel's YaRN parameters (RopeParams' yarn fields).
RopeYarn yarn_of(const RopeParams& rope) {
  RopeYarn y;
  y.factor = rope.yarn_factor;
  y.orig_ctx = rope.yarn_orig_ctx;
  y.beta_fast = rope.yarn_beta_fast;
  y.beta_slow = rope.yarn_beta_slow;
  y.truncate = rope.yarn_truncate;
  y.attn_factor = rope.attn_factor;
  return y;
}
}  // namespace

void CudaBackend::rope(Act& x, int64_t head_dim, const RopeParams& rope) {
  VELOCITY_CHECK(x.n_cols % head_dim == 0 && rope.n_rot % 2 == 0 && rope.n_rot <= head_dim);
  VELOCITY_CHECK(x.n_rows == step_tokens_, "rope over {} rows in a step of {} tokens", x.n_rows, step_tokens_);
  VELOCITY_CHECK(!rope.freq_factors.present() || (rope.freq_factors.type == DType::F32 &&
                                                  rope.freq_factors.n_in == rope.n_rot / 2 &&
                                                  rope.freq_factors.device == device()));
  if (rope.type == RopeType::None) return;
  cuda::rope(x.data, x.n_cols, x.n_rows, x.n_cols / head_dim, head_dim, rope.n_rot,
             rope.type == RopeType::Neox ? RopeKind::Neox : RopeKind::Normal, rope.freq_base, rope.freq_scale,
             reinterpret_cast<const float*>(rope.freq_factors.data), d_positions_, stream_, yarn_of(rope));
}

// rope(q) and rope(k) in one launch (the same bits as the two calls).
void CudaBackend::rope_qk(Act& q, Act& k, int64_t head_dim, const RopeParams& rope) {
  VELOCITY_CHECK(q.n_cols % head_dim == 0 && k.n_cols % head_dim == 0 && rope.n_rot % 2 == 0 && rope.n_rot <= head_dim);
  VELOCITY_CHECK(q.n_rows == step_tokens_ && k.n_rows == step_tokens_, "rope over {} rows in a step of {} tokens",
                 q.n_rows, step_tokens_);
  VELOCITY_CHECK(!rope.freq_factors.present() || (rope.freq_factors.type == DType::F32 &&
                                                  rope.freq_factors.n_in == rope.n_rot / 2 &&
                                                  rope.freq_factors.device == device()));
  if (rope.type == RopeType::None) return;
  cuda::rope2(q.data, q.n_cols, q.n_cols / head_dim, k.data, k.n_cols, k.n_cols / head_dim, q.n_rows, head_dim,
              rope.n_rot, rope.type == RopeType::Neox ? RopeKind::Neox : RopeKind::Normal, rope.freq_base,
              rope.freq_scale, reinterpret_cast<const float*>(rope.freq_factors.data), d_positions_, stream_,
              yarn_of(rope));
}

void CudaBackend::attention(const AttentionParams& p, const Act& q, const Act& k, const Act& v, Act& out) {
  VELOCITY_CHECK(q.n_rows == step_tokens_ && k.n_rows == step_tokens_ && v.n_rows == step_tokens_);
  VELOCITY_CHECK(q.n_cols == p.n_head * p.head_dim_k && k.n_cols == p.n_head_kv * p.head_dim_k &&
                 v.n_cols == p.n_head_kv * p.head_dim_v && out.n_cols == p.n_head * p.head_dim_v);
  VELOCITY_CHECK(p.layer >= 0 && p.layer < static_cast<int32_t>(kv_.size()) && kv_[p.layer].k != nullptr,
                 "layer {} has no KV cache on {}", p.layer, name_);
  VELOCITY_CHECK(p.n_head_kv == shape_.n_head_kv && p.head_dim_k == shape_.head_dim_k && p.head_dim_v == shape_.head_dim_v);
  out.n_rows = q.n_rows;
  const KvLayer& cache = kv_[p.layer];
  kv_store(cache, k.data, k.n_cols, v.data, v.n_cols, d_positions_, d_seq_ids_, step_tokens_, stream_);
  const float scale = p.scale != 0 ? p.scale : 1.0f / std::sqrt(static_cast<float>(p.head_dim_k));
  cuda::AttentionOptions options;
  options.window = p.window;
  if (p.sinks.present()) {
    VELOCITY_CHECK(p.sinks.type == DType::F32 && p.sinks.n_in == p.n_head && p.sinks.device == device(),
                   "{}: sinks must be F32 [{}] on {}", p.sinks.name, p.n_head, name_);
    options.sinks = reinterpret_cast<const float*>(p.sinks.data);
  }
  cuda::attention(cache, q.data, q.n_cols, p.n_head, scale, d_positions_, d_seq_ids_, step_tokens_, n_decode_, out.data,
                  out.n_cols, *attention_ws_, stream_, options);
}

void CudaBackend::swiglu(const Act& gate, const Act& up, Act& out) {
  VELOCITY_CHECK(gate.n_cols == up.n_cols && gate.n_rows == up.n_rows && out.n_cols == gate.n_cols);
  out.n_rows = gate.n_rows;
  cuda::swiglu(gate.data, gate.n_cols, up.data, up.n_cols, gate.n_rows, gate.n_cols, out.data, out.n_cols, stream_);
}

void CudaBackend::swiglu_clamped(const Act& gate, const Act& up, const ExpertGlu& glu, Act& out) {
  VELOCITY_CHECK(gate.n_cols == up.n_cols && gate.n_rows == up.n_rows && out.n_cols == gate.n_cols);
  out.n_rows = gate.n_rows;
  cuda::swiglu_clamped(gate.data, gate.n_cols, up.data, up.n_cols, gate.n_rows, gate.n_cols, glu.alpha, glu.limit,
                       out.data, out.n_cols, stream_);
}

void CudaBackend::add(Act& x, const Act& y) {
  VELOCITY_CHECK(x.n_rows == y.n_rows && x.n_cols == y.n_cols);
  cuda::add(x.data, x.n_cols, y.data, y.n_cols, x.n_rows, x.n_cols, stream_);
}

void CudaBackend::moe_route(const Act& logits, const MoeParams& p, MoeRoute& route) {
  VELOCITY_CHECK(logits.n_cols == p.n_expert && route.k == p.n_expert_used && p.n_expert_used <= p.n_expert);
  route.n_tokens = logits.n_rows;
  cuda::moe_route(logits.data, logits.n_cols, logits.n_rows, p.n_expert, route.k, p.normalize_weights, route.ids,
                  route.weights, stream_);
}

void CudaBackend::moe_experts(const MoeRoute& route, const MoeLayer& layer, const Act& x, Act& out) {
  VELOCITY_CHECK(x.n_rows == route.n_tokens && out.n_cols == x.n_cols);
  const int64_t n = x.n_rows, k = route.k, fe = layer.gate_exps.n_out;
  VELOCITY_CHECK(n * k <= moe_gate_.capacity && fe == moe_gate_.n_cols);
  const int64_t n_decode = decode_rows(n);
  // gate, up: one product per (token, slot) with the token's row; down: per (token, slot) row.
  matmul_ids(layer.gate_exps, route.ids, k, x.data, x.n_cols, false, n, n_decode, moe_gate_.data, fe, *matmul_ws_, stream_);
  matmul_ids(layer.up_exps, route.ids, k, x.data, x.n_cols, false, n, n_decode, moe_up_.data, fe, *matmul_ws_, stream_);
  // Per-expert biases (gpt-oss): row ids[p] of a [n, E] table onto each (token, slot) row.
  auto add_expert_bias = [&](const Weight& b, float* y, int64_t ldy, int64_t width) {
    if (!b.present()) return;
    VELOCITY_CHECK(b.type == DType::F32 && b.n_in == width && b.n_out * b.n_mat == layer.gate_exps.n_mat &&
                       b.device == device(),
                   "{}: a per-expert bias must be F32 [{}, {}]", b.name, width, layer.gate_exps.n_mat);
    cuda::add_bias_ids(y, ldy, reinterpret_cast<const float*>(b.data), b.n_in, route.ids, n * k, width, stream_);
  };
  add_expert_bias(layer.gate_exps_b, moe_gate_.data, fe, fe);
  add_expert_bias(layer.up_exps_b, moe_up_.data, fe, fe);
  if (layer.glu.kind == ExpertGlu::Kind::Clamped)
    cuda::swiglu_clamped(moe_gate_.data, fe, moe_up_.data, fe, n * k, fe, layer.glu.alpha, layer.glu.limit,
                         moe_gate_.data, fe, stream_);
  else
    cuda::swiglu(moe_gate_.data, fe, moe_up_.data, fe, n * k, fe, moe_gate_.data, fe, stream_);
  matmul_ids(layer.down_exps, route.ids, k, moe_gate_.data, fe, true, n, n_decode, moe_out_.data, moe_out_.n_cols,
             *matmul_ws_, stream_);
  add_expert_bias(layer.down_exps_b, moe_out_.data, moe_out_.n_cols, out.n_cols);
  out.n_rows = n;
  moe_combine(moe_out_.data, moe_out_.n_cols, route.weights, n, k, out.n_cols, out.data, out.n_cols, stream_);
}

void CudaBackend::select_output_rows(const Act& x, Act& out) {
  VELOCITY_CHECK(out.n_cols == x.n_cols);
  out.n_rows = step_outputs_;
  gather_rows(x.data, x.n_cols, d_output_rows_, step_outputs_, x.n_cols, out.data, out.n_cols, stream_);
}

}  // namespace velocity::engine::cuda

namespace velocity::engine {

std::unique_ptr<Backend> make_cuda_backend(int index) { return std::make_unique<cuda::CudaBackend>(index); }

std::optional<double> measure_copy_bandwidth(Device device, uint64_t bytes) {
  if (!device.is_cuda()) return std::nullopt;
  VELOCITY_CUDA(cudaSetDevice(device.index));
  const size_t half = static_cast<size_t>(bytes / 2) / 256 * 256;
  void* a = nullptr;
  void* b = nullptr;
  VELOCITY_CUDA(cudaMalloc(&a, half));
  VELOCITY_CUDA(cudaMalloc(&b, half));
  cudaEvent_t start, stop;
  VELOCITY_CUDA(cudaEventCreate(&start));
  VELOCITY_CUDA(cudaEventCreate(&stop));
  VELOCITY_CUDA(cudaMemset(a, 1, half));
  float best = 1e30f;
  for (int r = 0; r < 6; ++r) {  // the first is a warm-up
    VELOCITY_CUDA(cudaEventRecord(start));
    VELOCITY_CUDA(cudaMemcpyAsync(b, a, half, cudaMemcpyDeviceToDevice));
    VELOCITY_CUDA(cudaEventRecord(stop));
    VELOCITY_CUDA(cudaEventSynchronize(stop));
    float ms = 0;
    VELOCITY_CUDA(cudaEventElapsedTime(&ms, start, stop));
    if (r > 0) best = std::min(best, ms);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaFree(a);
  cudaFree(b);
  return 2.0 * static_cast<double>(half) / (static_cast<double>(best) * 1e-3);
}

std::optional<double> tensor_peak_flops(Device device) {
  if (!device.is_cuda()) return std::nullopt;
  int sms = 0, khz = 0, major = 0, minor = 0;
  VELOCITY_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device.index));
  VELOCITY_CUDA(cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, device.index));
  VELOCITY_CUDA(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device.index));
  VELOCITY_CUDA(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device.index));
  // Dense BF16 FLOP per clock per SM with FP32 accumulation, from the vendors' datasheets:
  // Hopper 4096 (H100 SXM: 989 TFLOP/s), A100 2048, Blackwell data centre 8192; the GeForce
  // and workstation parts of Ampere, Ada and Blackwell (8.6, 8.9, 12.x) 1024.
  const int per_clock = major == 9 ? 4096 : major == 10 ? 8192 : (major == 8 && minor == 0) ? 2048 : 1024;
  return static_cast<double>(sms) * static_cast<double>(khz) * 1e3 * per_clock;
}

bool cuda_device_supported(int index) {
  if (index < 0 || index >= cuda_device_count()) return false;
  int major = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, index) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return major >= 8;
}

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

}  // namespace velocity::engine
