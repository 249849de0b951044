// `velocity inspect` text report: one section per question a user asks of a model file — what
// is it (architecture, hyperparameters, tokenizer), what is in it (metadata, tensors, totals by
// type) and what it costs (parameters, bits per weight, bytes per decoded token, decode bound).
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <optional>

#include "tools/inspect.h"

namespace velocity::tools {
namespace {

// Display width of UTF-8 text: code points (no East Asian width tables; close enough for tables).
size_t display_width(std::string_view s) {
  size_t n = 0;
  for (char c : s)
    if (((unsigned char)c & 0xC0) != 0x80) ++n;
  return n;
}

// A column-aligned table; the first row is the header when `header` is set.
class Table {
 public:
  explicit Table(std::vector<bool> right_aligned) : right_(std::move(right_aligned)) {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  bool empty() const { return rows_.empty(); }

  void print(std::ostream& out, std::string_view indent = "  ") const {
    std::vector<size_t> widths(right_.size(), 0);
    for (const auto& row : rows_)
      for (size_t i = 0; i < row.size() && i < widths.size(); ++i) widths[i] = std::max(widths[i], display_width(row[i]));
    for (const auto& row : rows_) {
      std::string line(indent);
      for (size_t i = 0; i < row.size() && i < widths.size(); ++i) {
        const size_t pad = widths[i] - display_width(row[i]);
        const bool last = i + 1 == row.size();
        if (right_[i]) line += std::string(pad, ' ') + row[i];
        else line += last ? row[i] : row[i] + std::string(pad, ' ');
        if (!last) line += "  ";
      }
      line.erase(line.find_last_not_of(' ') + 1);
      out << line << '\n';
    }
  }

 private:
  std::vector<bool> right_;
  std::vector<std::vector<std::string>> rows_;
};

// 1234567 -> "1,234,567".
std::string grouped(uint64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string scaled(double v, const char* const* units, size_t n_units, double step) {
  size_t unit = 0;
  while (v >= step && unit + 1 < n_units) {
    v /= step;
    ++unit;
  }
  if (unit == 0) return fmt::format("{:.0f}{}", v, units[0]);
  return fmt::format("{:.{}f}{}", v, v < 10 ? 2 : v < 100 ? 1 : 0, units[unit]);
}

// Decimal units, as bandwidths are quoted.
std::string human_bytes(uint64_t n) {
  static const char* const kUnits[] = {" B", " kB", " MB", " GB", " TB", " PB"};
  return scaled((double)n, kUnits, std::size(kUnits), 1000.0);
}

std::string human_count(uint64_t n) {
  static const char* const kUnits[] = {"", " K", " M", " B", " T"};
  return scaled((double)n, kUnits, std::size(kUnits), 1000.0);
}

std::string human_bandwidth(double bytes_per_second) {
  if (bytes_per_second < 1e12) return fmt::format("{:.0f} GB/s", bytes_per_second / 1e9);
  return fmt::format("{:.2f} TB/s", bytes_per_second / 1e12);
}

std::string human_rate(double tokens_per_second) {
  if (tokens_per_second >= 1000) return grouped((uint64_t)(tokens_per_second + 0.5));
  return fmt::format("{:.1f}", tokens_per_second);
}

// Quoted text with escapes; cut after max_chars code points (0: never).
std::string quoted(std::string_view s, size_t max_chars) {
  std::string out = "\"";
  size_t n = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = (unsigned char)s[i];
    if ((c & 0xC0) != 0x80 && max_chars && n++ >= max_chars) {
      out += "…";
      break;
    }
    switch (c) {
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      default:
        if (c < 0x20 || c == 0x7f) out += fmt::format("\\x{:02x}", c);
        else out += (char)c;
    }
  }
  return out + "\"";
}

std::string shape_text(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

// Short form of a value (Value::summary), with float32 scalars in their shortest float form
// (1e-05, not the 9.999999747378752e-06 of its double).
std::string brief(const gguf::Value& value, size_t max_chars) {
  if (value.type() == gguf::ValueType::FLOAT32) return fmt::format("{}", value.get<float>());
  return value.summary(max_chars);
}

// A non-negative integer scalar, or nullopt (never throws: the report shows odd values as they are).
std::optional<uint64_t> count_of(const gguf::Value& value) {
  if (!value.is_integer()) return std::nullopt;
  if (value.type() != gguf::ValueType::UINT64 && value.as_int() < 0) return std::nullopt;
  return value.as_uint();
}

// " (Q4_K_M)" after general.file_type's number.
std::string file_type_note(const std::string& key, const ModelSummary& summary) {
  if (key != "general.file_type" || !summary.file_type) return "";
  const std::string_view name = file_type_name(*summary.file_type);
  return name.empty() ? "" : fmt::format(" ({})", name);
}

// Items of a numeric or bool array as text (float32 in its shortest round-trip form).
std::vector<std::string> numeric_items(const gguf::Value& value) {
  using gguf::ValueType;
  std::vector<std::string> out;
  switch (value.elem_type()) {
    case ValueType::FLOAT32:
      for (float f : value.array_as<float>()) out.push_back(fmt::format("{}", f));
      break;
    case ValueType::FLOAT64:
      for (double d : value.array_as<double>()) out.push_back(fmt::format("{}", d));
      break;
    case ValueType::BOOL:
      for (uint8_t b : value.packed()) out.push_back(b ? "true" : "false");
      break;
    case ValueType::UINT64:
      for (uint64_t u : value.array_as<uint64_t>()) out.push_back(std::to_string(u));
      break;
    default:
      for (int64_t i : value.int_array()) out.push_back(std::to_string(i));
  }
  return out;
}

// A value in full: scalars and strings on one line; arrays as one line per item (numbers 16 to a
// line), each line prefixed with `indent`.
void print_full(std::ostream& out, const gguf::Value& value, const std::string& indent) {
  using gguf::ValueType;
  if (!value.is_array()) {
    out << (value.type() == ValueType::STRING ? quoted(value.as_string(), 0) : brief(value, 0)) << '\n';
    return;
  }
  const size_t n = value.array_size();
  out << fmt::format("[{} x {}]\n", n, gguf::value_type_name(value.elem_type()));
  if (value.elem_type() == ValueType::STRING) {
    const auto& items = value.strings();
    for (size_t i = 0; i < items.size(); ++i) out << fmt::format("{}{:>6}  {}\n", indent, i, quoted(items[i], 0));
  } else if (value.elem_type() == ValueType::ARRAY) {
    const auto& items = value.arrays();
    for (size_t i = 0; i < items.size(); ++i) {
      out << fmt::format("{}{:>6}  ", indent, i);
      print_full(out, items[i], indent + "        ");
    }
  } else {
    const auto items = numeric_items(value);
    constexpr size_t kPerLine = 16;
    for (size_t start = 0; start < items.size(); start += kPerLine) {
      const auto first = items.begin() + (std::ptrdiff_t)start;
      const auto last = items.begin() + (std::ptrdiff_t)std::min(items.size(), start + kPerLine);
      out << fmt::format("{}{:>6}  {}\n", indent, start, fmt::join(first, last, ", "));
    }
  }
}

void print_header(const gguf::File& file, const ModelSummary& summary, std::ostream& out) {
  const auto& first = file.shards().at(0);
  out << fmt::format("file          {}\n", first.path);
  out << fmt::format("format        GGUF v{}, alignment {}, {} metadata keys, {} tensors{}\n", file.version(),
                     file.alignment(), file.metadata().size(), summary.n_tensors,
                     file.header_only() ? ", header only (no tensor data)" : "");
  if (summary.n_shards > 1) {
    const auto name = [&](size_t i) { return std::filesystem::path(file.shards()[i].path).filename().string(); };
    out << fmt::format("split         {} shards: {}", summary.n_shards, name(0));
    if (summary.n_shards > 2) out << " …";
    out << ' ' << name(file.shards().size() - 1) << '\n';
  }
  out << fmt::format("architecture  {}\n", summary.architecture.empty() ? "(none)" : summary.architecture);
  if (const gguf::Value* name = file.find("general.name"); name && name->type() == gguf::ValueType::STRING)
    out << fmt::format("name          {}\n", name->as_string());
}

void print_hyperparameters(const gguf::File& file, std::ostream& out) {
  const auto hparams = hyperparameters(file);
  if (hparams.empty()) return;
  out << "\nhyperparameters\n";
  Table table({false, true, false});
  const gguf::Value* heads = nullptr;
  const gguf::Value* embedding = nullptr;
  bool has_key_length = false;
  for (const auto& h : hparams) {
    table.add({h.label, brief(*h.value, 60), h.key});
    if (h.label == "heads") heads = h.value;
    if (h.label == "embedding length") embedding = h.value;
    if (h.label == "head dim (k)") has_key_length = true;
  }
  const auto n_heads = heads ? count_of(*heads) : std::nullopt;
  const auto n_embd = embedding ? count_of(*embedding) : std::nullopt;
  if (!has_key_length && n_heads && n_embd && *n_heads > 0)
    table.add({"head dim", std::to_string(*n_embd / *n_heads), "(embedding length / heads)"});
  table.print(out);
}

void print_tokenizer(const TokenizerSummary& tok, std::ostream& out) {
  if (!tok.present) return;
  out << "\ntokenizer\n";
  Table table({false, false});
  table.add({"model", tok.model.empty() ? "(none)" : tok.model});
  if (!tok.pre.empty()) table.add({"pre", tok.pre});
  table.add({"vocab size", grouped(tok.n_vocab)});
  table.add({"merges", grouped(tok.n_merges)});
  std::vector<std::string> arrays;
  if (tok.has_scores) arrays.push_back("scores");
  if (tok.has_token_type) arrays.push_back("token_type");
  if (!arrays.empty()) table.add({"per-token arrays", fmt::format("{}", fmt::join(arrays, ", "))});
  for (const auto& token : tok.special_tokens)
    table.add({fmt::format("{} token", token.name),
               fmt::format("{} {}", token.id, token.text ? quoted(*token.text, 40) : "(outside the vocabulary)")});
  for (const auto& [name, flag] : tok.add_flags) table.add({name, flag ? "true" : "false"});
  table.add({"chat template",
             tok.chat_template_bytes ? fmt::format("present, {} bytes", grouped(*tok.chat_template_bytes)) : "absent"});
  for (const auto& [name, bytes] : tok.named_chat_templates)
    table.add({fmt::format("chat template {}", name), fmt::format("present, {} bytes", grouped(bytes))});
  table.print(out);
}

void print_metadata(const gguf::File& file, const ModelSummary& summary, bool all, std::ostream& out) {
  const std::string arch = file.architecture();
  const std::string prefix = arch.empty() ? std::string() : arch + ".";
  std::vector<const std::pair<std::string, gguf::Value>*> entries;
  for (const auto& kv : file.metadata())
    if (all || prefix.empty() || !kv.first.starts_with(prefix)) entries.push_back(&kv);
  if (entries.empty()) return;
  out << (all ? "\nmetadata (all keys, in full)\n" : fmt::format("\nmetadata (keys other than {}*)\n", prefix));
  if (all) {
    for (const auto* kv : entries) {
      out << fmt::format("  {} ({}) = ", kv->first, gguf::value_type_name(kv->second.type()));
      if (const std::string note = file_type_note(kv->first, summary); !note.empty()) out << brief(kv->second, 0) << note << '\n';
      else print_full(out, kv->second, "    ");
    }
    return;
  }
  Table table({false, false, false});
  for (const auto* kv : entries)
    table.add({kv->first, std::string(gguf::value_type_name(kv->second.type())),
               brief(kv->second, 60) + file_type_note(kv->first, summary)});
  table.print(out);
}

void print_tensors(const gguf::File& file, const ModelSummary& summary, std::ostream& out) {
  out << fmt::format("\ntensors ({})\n", summary.n_tensors);
  const bool split = summary.n_shards > 1;
  Table table(split ? std::vector<bool>{false, false, false, true, true} : std::vector<bool>{false, false, false, true});
  std::vector<std::string> header = {"name", "type", "shape", "bytes"};
  if (split) header.push_back("shard");
  table.add(header);
  for (const auto& tensor : file.tensors()) {
    std::vector<std::string> row = {tensor.name, std::string(dtype_name(tensor.type)), shape_text(tensor.shape),
                                    grouped(tensor.n_bytes)};
    if (split) row.push_back(std::to_string(tensor.shard + 1));
    table.add(std::move(row));
  }
  table.print(out);

  out << "\ntotals by type\n";
  Table totals({false, true, true, true, true});
  totals.add({"type", "tensors", "params", "bytes", "bits/weight"});
  for (const auto& t : summary.types)
    totals.add({std::string(dtype_name(t.type)), grouped(t.n_tensors), grouped(t.n_params), grouped(t.n_bytes),
                t.n_params ? fmt::format("{:.2f}", 8.0 * (double)t.n_bytes / (double)t.n_params) : "-"});
  totals.add({"total", grouped(summary.n_tensors), grouped(summary.n_params), grouped(summary.n_bytes),
              fmt::format("{:.2f}", summary.bits_per_weight)});
  totals.print(out);
}

void print_costs(const gguf::File& file, const ModelSummary& summary, std::ostream& out) {
  out << "\nmodel\n";
  Table table({false, true, false});
  table.add({"parameters", grouped(summary.n_params), human_count(summary.n_params)});
  table.add({"tensor bytes", grouped(summary.n_bytes), human_bytes(summary.n_bytes)});
  table.add({"file bytes", grouped(summary.n_file_bytes),
             fmt::format("{}{}", human_bytes(summary.n_file_bytes), summary.n_shards > 1 ? fmt::format(", {} shards", summary.n_shards) : "")});
  table.add({"bits per weight", fmt::format("{:.3f}", summary.bits_per_weight), ""});
  if (summary.n_expert > 0) {
    uint64_t expert_bytes = 0;
    uint64_t expert_bytes_read = 0;
    for (const auto& tensor : file.tensors()) {
      const uint64_t read = tensor_bytes_per_token(tensor, summary);
      if (tensor.name.find("_exps") != std::string::npos && read != tensor.n_bytes) {
        expert_bytes += tensor.n_bytes;
        expert_bytes_read += read;
      }
    }
    table.add({"experts", fmt::format("{} used of {}", summary.n_expert_used, summary.n_expert),
               fmt::format("expert tensors {} of {} read per token", human_bytes(expert_bytes_read), human_bytes(expert_bytes))});
  }
  table.add({"embeddings", summary.tied_embeddings ? "tied" : "untied",
             summary.tied_embeddings ? "no output.weight: token_embd is read in full by the output head"
                                     : "token_embd: one row per token"});
  table.add({"bytes per token", grouped(summary.bytes_per_token),
             fmt::format("{} weights read per decoded token at batch 1", human_bytes(summary.bytes_per_token))});
  table.print(out);

  if (summary.bytes_per_token == 0) return;
  out << "\ndecode bound at batch 1 (bandwidth / bytes per token)\n";
  Table bounds({false, true, true});
  for (const auto& bw : reference_bandwidths())
    bounds.add({std::string(bw.name), human_bandwidth(bw.bytes_per_second),
                fmt::format("{} tok/s", human_rate(bw.bytes_per_second / (double)summary.bytes_per_token))});
  bounds.print(out);
}

}  // namespace

void inspect(const gguf::File& file, const InspectOptions& options, std::ostream& out) {
  if (options.json) {
    // Invalid UTF-8 in a string (a hostile or broken file) is replaced rather than thrown on.
    out << inspect_json(file).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
    return;
  }
  const ModelSummary summary = summarize(file);
  print_header(file, summary, out);
  print_hyperparameters(file, out);
  print_tokenizer(tokenizer_summary(file), out);
  print_metadata(file, summary, options.all_metadata, out);
  print_tensors(file, summary, out);
  print_costs(file, summary, out);
}

}  // namespace velocity::tools
