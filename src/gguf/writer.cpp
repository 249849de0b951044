// GGUF writer. The layout follows the writers of the GGUF ecosystem, so that every reader of it
// (ggml's gguf.cpp, gguf-py, @huggingface/gguf, ours) reads what we write:
//
//  - Padding. gguf-py's GGUFWriter (write_tensors_to_file: write_padding after the tensor infos
//    and after every tensor) and ggml's gguf.cpp (gguf_writer::write_tensor_data: pad(alignment)
//    after every tensor) both pad the tensor-info section to the alignment and pad *every* tensor,
//    the last one included, to the alignment with zero bytes. A tensor's offset is the sum of the
//    padded sizes before it, so a file is data_offset + sum(padded sizes) bytes long.
//  - general.alignment (UINT32) is written only when the alignment is not the default 32, as
//    gguf-py's add_custom_alignment does; every reader defaults to 32 without it.
//  - Split output. llama.cpp's gguf-split (split_strategy) puts all metadata into the first split
//    only and then sets split.no (u16), split.count (u16), split.tensors.count (i32) on every
//    split; ggml's gguf_set_val_* removes a key and appends it at the end, so the split keys follow
//    the model's metadata (gguf-split re-sets split.count last, so its order ends up no,
//    tensors.count, count). gguf-py's add_shard_kv_data appends split.no, split.count,
//    split.tensors.count after shard 0's metadata; we use that order. Readers find keys by name.
//  - Shard assignment. gguf-py starts a new shard when the current one holds at least one tensor
//    and the next tensor would take it past the limit; gguf-split counts each tensor padded to
//    the alignment. We do both: a shard holds at most split_max_bytes of data section (padding
//    included), unless it is a single tensor larger than that, which then gets a shard of its own.
//  - Unlike gguf-split (which pads every split to 32 and copies general.alignment into the first
//    split only), a non-default general.alignment is repeated in every shard: each shard is parsed
//    as a file of its own (llama.cpp runs gguf_init_from_file per split), and our offsets use it.
//  - With split_max_bytes > 0 the output always gets shard names and split keys, even when
//    everything fits one shard (as gguf-split does; gguf-py then falls back to the plain name).
//
// Outputs are written to "<path>.tmp" and renamed by finish(), so an interrupted run never leaves
// a truncated file under the final name; an unfinished Writer removes its .tmp files.
#include "gguf/writer.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>

#include <unistd.h>

#include "core/error.h"
#include "gguf/file.h"

namespace velocity::gguf {

static_assert(std::endian::native == std::endian::little, "the GGUF writer assumes a little-endian host");

namespace {

constexpr std::string_view kAlignmentKey = "general.alignment";
constexpr std::string_view kSplitNoKey = "split.no";
constexpr std::string_view kSplitCountKey = "split.count";
constexpr std::string_view kSplitTensorsCountKey = "split.tensors.count";
constexpr uint32_t kVersion = 3;
constexpr size_t kMaxTensorName = 64;

uint64_t padded(uint64_t n, uint64_t alignment) { return (n + alignment - 1) / alignment * alignment; }

// Little-endian serialisation of header parts into a byte buffer.
struct Bytes {
  std::vector<uint8_t> buf;

  void raw(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    buf.insert(buf.end(), b, b + n);
  }
  template <class T> void put(T v) { raw(&v, sizeof v); }
  void string(std::string_view s) {
    put<uint64_t>(s.size());
    raw(s.data(), s.size());
  }

  // A value without its type tag (the tag precedes it for a KV pair; array elements have none).
  void value(const Value& v) {
    switch (v.type()) {
      case ValueType::UINT8: put(v.get<uint8_t>()); break;
      case ValueType::INT8: put(v.get<int8_t>()); break;
      case ValueType::UINT16: put(v.get<uint16_t>()); break;
      case ValueType::INT16: put(v.get<int16_t>()); break;
      case ValueType::UINT32: put(v.get<uint32_t>()); break;
      case ValueType::INT32: put(v.get<int32_t>()); break;
      case ValueType::FLOAT32: put(v.get<float>()); break;
      case ValueType::BOOL: put<uint8_t>(v.get<bool>() ? 1 : 0); break;
      case ValueType::UINT64: put(v.get<uint64_t>()); break;
      case ValueType::INT64: put(v.get<int64_t>()); break;
      case ValueType::FLOAT64: put(v.get<double>()); break;
      case ValueType::STRING: string(v.as_string()); break;
      case ValueType::ARRAY: array(v); break;
    }
  }

  // u32 element type, u64 count, elements (an array of arrays nests this per element).
  void array(const Value& v) {
    const ValueType elem = v.elem_type();
    put<uint32_t>(static_cast<uint32_t>(elem));
    put<uint64_t>(v.array_size());
    if (elem == ValueType::STRING) {
      for (const auto& s : v.strings()) string(s);
    } else if (elem == ValueType::ARRAY) {
      for (const auto& a : v.arrays()) array(a);
    } else {
      raw(v.packed().data(), v.packed().size());
    }
  }

  void kv(std::string_view key, const Value& v) {
    string(key);
    put<uint32_t>(static_cast<uint32_t>(v.type()));
    value(v);
  }
};

}  // namespace

Writer::Writer(std::string path, WriterOptions options) : path_(std::move(path)), options_(options) {
  const uint64_t a = options_.alignment;
  if (a == 0 || !std::has_single_bit(a) || a > std::numeric_limits<uint32_t>::max())
    fail("{}: alignment {} is not a power of two that fits UINT32", path_, a);
}

Writer::~Writer() {
  if (finished_) return;
  if (out_) std::fclose(out_);
  for (uint32_t i = 0; i < n_opened_; ++i) std::remove(tmp_paths_[i].c_str());
}

void Writer::set(std::string key, Value value) {
  if (begun_) fail("{}: metadata key '{}' set after begin_data()", path_, key);
  if (keys_.count(key)) fail("{}: duplicate metadata key '{}'", path_, key);
  if (key == kAlignmentKey) {
    // Allowed when it agrees with the alignment the writer uses; the writer then adds none.
    if (value.type() != ValueType::UINT32 || value.get<uint32_t>() != options_.alignment)
      fail("{}: general.alignment must be UINT32 {} (WriterOptions::alignment), got {} {}", path_,
           options_.alignment, value_type_name(value.type()), value.summary());
    user_alignment_key_ = true;
  }
  if (options_.header_only && key == kHeaderOnlyKey) {
    if (value.type() != ValueType::BOOL || !value.get<bool>())
      fail("{}: {} must be BOOL true in a header-only file", path_, key);
    user_header_only_key_ = true;
  }
  if (options_.split_max_bytes > 0 &&
      (key == kSplitNoKey || key == kSplitCountKey || key == kSplitTensorsCountKey))
    fail("{}: metadata key '{}' is written by the writer for split output", path_, key);
  keys_.insert(key);
  metadata_.emplace_back(std::move(key), std::move(value));
}

void Writer::add_tensor(std::string name, DType type, std::vector<int64_t> shape) {
  if (begun_) fail("{}: tensor '{}' added after begin_data()", path_, name);
  if (tensor_index_.count(name)) fail("{}: duplicate tensor name '{}'", path_, name);
  // ggml keeps tensor names in a char[GGML_MAX_NAME = 64] and refuses longer ones on load.
  if (name.empty() || name.size() >= kMaxTensorName)
    fail("{}: tensor name '{}' has {} bytes; GGUF readers accept 1 to {}", path_, name, name.size(),
         kMaxTensorName - 1);
  if (shape.empty() || shape.size() > static_cast<size_t>(kMaxDims))
    fail("{}: tensor '{}' has {} dimensions; GGUF allows 1 to {}", path_, name, shape.size(), kMaxDims);
  const DTypeInfo& info = dtype_info(type);
  int64_t n_elements = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) fail("{}: tensor '{}' has a negative dimension {} = {}", path_, name, i, shape[i]);
    if (__builtin_mul_overflow(n_elements, shape[i], &n_elements))
      fail("{}: tensor '{}' has more elements than fit int64", path_, name);
  }
  if (shape[0] % info.block_size != 0)
    fail("{}: tensor '{}' ({}) has shape[0] = {}, not a multiple of the block size {}", path_, name, info.name,
         shape[0], info.block_size);
  uint64_t n_bytes = 0;
  if (__builtin_mul_overflow(static_cast<uint64_t>(n_elements / info.block_size),
                             static_cast<uint64_t>(info.block_bytes), &n_bytes) ||
      n_bytes > std::numeric_limits<uint64_t>::max() - options_.alignment ||
      __builtin_add_overflow(total_bytes_, n_bytes, &total_bytes_))
    fail("{}: tensor '{}' is too large", path_, name);
  tensor_index_.emplace(name, tensors_.size());
  tensors_.push_back(Pending{std::move(name), type, std::move(shape), n_bytes, 0, 0});
}

void Writer::begin_data() {
  if (begun_) fail("{}: begin_data() called twice", path_);
  const uint64_t align = options_.alignment;

  // Shard assignment and offsets (see the top of the file).
  const bool split = options_.split_max_bytes > 0;
  shard_data_bytes_.assign(1, 0);
  uint32_t n_in_shard = 0;
  for (auto& t : tensors_) {
    const uint64_t size = padded(t.n_bytes, align);
    uint64_t& used = shard_data_bytes_.back();
    if (split && n_in_shard > 0 && (used + size < used || used + size > options_.split_max_bytes)) {
      shard_data_bytes_.push_back(0);
      n_in_shard = 0;
    }
    t.shard = static_cast<uint32_t>(shard_data_bytes_.size() - 1);
    t.offset = shard_data_bytes_.back();
    if (__builtin_add_overflow(shard_data_bytes_.back(), size, &shard_data_bytes_.back()))
      fail("{}: tensor data larger than 2^64 bytes", path_);
    ++n_in_shard;
  }
  const size_t n_shards = shard_data_bytes_.size();
  if (split && n_shards > std::numeric_limits<uint16_t>::max())
    fail("{}: {} shards; split.count is UINT16 (at most 65535): raise split_max_bytes", path_, n_shards);
  if (split && tensors_.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max()))
    fail("{}: {} tensors; split.tensors.count is INT32", path_, tensors_.size());

  paths_.clear();
  if (split) {
    std::string_view prefix = path_;
    if (prefix.ends_with(".gguf")) prefix.remove_suffix(5);
    for (size_t i = 0; i < n_shards; ++i)
      paths_.push_back(split_path(prefix, static_cast<int>(i + 1), static_cast<int>(n_shards)));
  } else {
    paths_.push_back(path_);
  }
  tmp_paths_.clear();
  for (const auto& p : paths_) tmp_paths_.push_back(p + ".tmp");

  begun_ = true;
  if (options_.header_only) {
    ensure_shard(static_cast<uint32_t>(n_shards - 1));  // every header, one file after another
  } else {
    ensure_shard(0);
    complete_tensors();  // leading zero-byte tensors
  }
}

std::vector<uint8_t> Writer::header_bytes(uint32_t shard) const {
  const bool split = options_.split_max_bytes > 0;
  std::vector<std::pair<std::string_view, Value>> extra;  // keys the writer adds, after the metadata
  if (options_.alignment != kDefaultAlignment && !(shard == 0 && user_alignment_key_))
    extra.emplace_back(kAlignmentKey, Value::scalar(static_cast<uint32_t>(options_.alignment)));
  if (shard == 0 && options_.header_only && !user_header_only_key_)
    extra.emplace_back(kHeaderOnlyKey, Value::scalar(true));
  if (split) {
    extra.emplace_back(kSplitNoKey, Value::scalar(static_cast<uint16_t>(shard)));
    extra.emplace_back(kSplitCountKey, Value::scalar(static_cast<uint16_t>(paths_.size())));
    extra.emplace_back(kSplitTensorsCountKey, Value::scalar(static_cast<int32_t>(tensors_.size())));
  }

  uint64_t n_tensors = 0;
  for (const auto& t : tensors_) n_tensors += t.shard == shard ? 1 : 0;
  const uint64_t n_kv = (shard == 0 ? metadata_.size() : 0) + extra.size();

  Bytes out;
  out.put<uint32_t>(kMagic);
  out.put<uint32_t>(kVersion);
  out.put<uint64_t>(n_tensors);
  out.put<uint64_t>(n_kv);
  if (shard == 0)
    for (const auto& [key, value] : metadata_) out.kv(key, value);
  for (const auto& [key, value] : extra) out.kv(key, value);
  for (const auto& t : tensors_) {
    if (t.shard != shard) continue;
    out.string(t.name);
    out.put<uint32_t>(static_cast<uint32_t>(t.shape.size()));
    for (int64_t d : t.shape) out.put<uint64_t>(static_cast<uint64_t>(d));
    out.put<uint32_t>(static_cast<uint32_t>(t.type));
    out.put<uint64_t>(t.offset);
  }
  out.buf.resize(padded(out.buf.size(), options_.alignment), 0);
  return std::move(out.buf);
}

void Writer::open_shard(uint32_t index) {
  VELOCITY_CHECK(out_ == nullptr && index == n_opened_, "shard {} opened out of order", index);
  const std::vector<uint8_t> header = header_bytes(index);
  current_shard_ = index;
  out_ = std::fopen(tmp_paths_[index].c_str(), "wb");
  if (!out_) io_fail(fmt::format("cannot create {}", tmp_paths_[index]), errno);
  ++n_opened_;  // from here on the destructor removes it
  std::setvbuf(out_, nullptr, _IOFBF, 1 << 20);
  shard_pos_ = 0;
  shard_end_ = header.size() + (options_.header_only ? 0 : shard_data_bytes_[index]);
  raw_write(header.data(), header.size());
}

void Writer::ensure_shard(uint32_t index) {
  VELOCITY_CHECK(index < paths_.size() && index + 1 >= n_opened_, "shard {} requested, {} opened", index, n_opened_);
  while (n_opened_ <= index) {
    if (out_) close_shard();
    open_shard(n_opened_);
  }
}

void Writer::close_shard() {
  std::FILE* f = out_;
  out_ = nullptr;
  int err = 0;
  errno = 0;
  if (std::fflush(f) != 0 || std::ferror(f)) err = errno ? errno : EIO;
  // Durable before the rename in finish(), so that not even a power loss leaves a short file
  // under the final name. EINVAL: the output is something that cannot be synced (a device).
  if (err == 0 && ::fsync(::fileno(f)) != 0 && errno != EINVAL) err = errno;
  if (std::fclose(f) != 0 && err == 0) err = errno ? errno : EIO;
  if (err != 0) io_fail("write failed", err);
  VELOCITY_CHECK(shard_pos_ == shard_end_, "{}: {} bytes written, {} expected", paths_[current_shard_], shard_pos_,
                 shard_end_);
}

void Writer::raw_write(const void* data, size_t n) {
  if (n == 0) return;
  errno = 0;
  if (std::fwrite(data, 1, n, out_) != n) io_fail("write failed", errno ? errno : EIO);
  shard_pos_ += n;
}

void Writer::write_zeros(uint64_t n) {
  static const uint8_t kZeros[4096] = {};
  while (n > 0) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, sizeof kZeros));
    raw_write(kZeros, chunk);
    n -= chunk;
  }
}

void Writer::io_fail(std::string_view what, int err) {
  failed_ = true;
  const std::string& path = current_shard_ < paths_.size() ? paths_[current_shard_] : path_;
  fail("{}: {}: {}", path, what, std::strerror(err));
}

// Moves past every tensor whose bytes are all written (zero-byte tensors included), padding each.
void Writer::complete_tensors() {
  while (current_tensor_ < tensors_.size() && current_written_ == tensors_[current_tensor_].n_bytes) {
    const Pending& t = tensors_[current_tensor_];
    ensure_shard(t.shard);
    write_zeros(padded(t.n_bytes, options_.alignment) - t.n_bytes);
    ++current_tensor_;
    current_written_ = 0;
  }
}

void Writer::require_data_phase(std::string_view what) const {
  if (!begun_) fail("{}: {} before begin_data()", path_, what);
  if (finished_) fail("{}: {} after finish()", path_, what);
  if (failed_) fail("{}: {} after an earlier write error", path_, what);
  if (options_.header_only) fail("{}: {} on a header-only writer, which takes no tensor data", path_, what);
}

void Writer::write(std::span<const uint8_t> bytes) {
  require_data_phase("write()");
  const uint64_t remaining = total_bytes_ - total_written_;
  if (bytes.size() > remaining) {
    if (remaining == 0) fail("{}: {} bytes written after all tensor data", path_, bytes.size());
    fail("{}: chunk of {} bytes, but only {} bytes of tensor data remain (tensor '{}' is due)", path_,
         bytes.size(), remaining, next_tensor());
  }
  size_t pos = 0;
  while (pos < bytes.size()) {
    const Pending& t = tensors_[current_tensor_];
    ensure_shard(t.shard);
    const size_t n = static_cast<size_t>(std::min<uint64_t>(bytes.size() - pos, t.n_bytes - current_written_));
    raw_write(bytes.data() + pos, n);
    pos += n;
    current_written_ += n;
    total_written_ += n;
    complete_tensors();
  }
}

void Writer::write_tensor(std::string_view name, std::span<const uint8_t> bytes) {
  require_data_phase("write_tensor()");
  const auto it = tensor_index_.find(std::string(name));
  if (it == tensor_index_.end()) fail("{}: write_tensor('{}'): no such tensor was declared", path_, name);
  const size_t index = it->second;
  const Pending& t = tensors_[index];
  if (index < current_tensor_) {
    if (t.n_bytes == 0 && bytes.empty()) return;  // zero-byte tensors are complete from the start
    fail("{}: tensor '{}' written twice", path_, name);
  }
  if (index > current_tensor_)
    fail("{}: tensor '{}' written out of order: '{}' is due first (tensors are written in declaration order)",
         path_, name, next_tensor());
  if (current_written_ != 0)
    fail("{}: write_tensor('{}') after {} of its {} bytes were written by write()", path_, name, current_written_,
         t.n_bytes);
  if (bytes.size() != t.n_bytes)
    fail("{}: tensor '{}' is {} bytes, write_tensor got {}", path_, name, t.n_bytes, bytes.size());
  write(bytes);
}

std::string_view Writer::next_tensor() const {
  if (options_.header_only || current_tensor_ >= tensors_.size()) return "";
  return tensors_[current_tensor_].name;
}

void Writer::finish() {
  if (finished_) return;
  if (failed_) fail("{}: finish() after an earlier write error", path_);
  if (!begun_) begin_data();
  if (!options_.header_only) {
    complete_tensors();
    if (current_tensor_ < tensors_.size()) {
      const Pending& t = tensors_[current_tensor_];
      fail("{}: tensor data missing: '{}' has {} of {} bytes, {} of {} tensors complete ({} of {} bytes written)",
           path_, t.name, current_written_, t.n_bytes, current_tensor_, tensors_.size(), total_written_,
           total_bytes_);
    }
  }
  ensure_shard(static_cast<uint32_t>(paths_.size() - 1));  // shards without tensors still get a header
  close_shard();
  for (size_t i = 0; i < paths_.size(); ++i) {
    if (std::rename(tmp_paths_[i].c_str(), paths_[i].c_str()) != 0) {
      const int err = errno;
      current_shard_ = static_cast<uint32_t>(i);
      io_fail(fmt::format("cannot rename {}", tmp_paths_[i]), err);
    }
  }
  finished_ = true;
}

}  // namespace velocity::gguf
