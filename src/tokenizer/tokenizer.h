// velocity's tokenizer: text <-> token ids for the two GGUF tokenizer models, matching the
// models' own (Hugging Face) tokenizers id for id.
//
//   Vocab vocab = Vocab::load("model.gguf");      // or hf_import_tokenizer("tokenizer.json")
//   Tokenizer tok(std::move(vocab));
//   std::vector<int32_t> ids = tok.encode("Hello", /*add_special=*/true, /*parse_special=*/false);
//   std::string text = tok.decode(ids);
//
// Input text that is not valid UTF-8 is first made valid by replacing each maximal invalid
// subpart with U+FFFD (what a JavaScript or Python caller of Hugging Face would pass).
// A Tokenizer is immutable after construction; encode/decode may run on many threads at once.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/special.h"
#include "tokenizer/vocab.h"

namespace velocity::tokenizer {

class PreTokenizer;
class SpmModel;

struct EncodeOptions {
  bool add_special = true;     // BOS / EOS as the vocabulary asks (add_bos / add_eos)
  bool parse_special = false;  // control tokens written in the text become their ids
  // Byte ranges of the input (any order, may overlap or be empty) where no control / unknown
  // token is matched, as with parse_special = false: a chat message's content inside a rendered
  // template. A token that would overlap one is left as text, tokenized with its neighbours.
  std::span<const TextRange> plain;
  // Polled every few KiB of input; once set, encode throws velocity::Cancelled.
  const std::atomic<bool>* cancel = nullptr;
};

class Tokenizer {
 public:
  explicit Tokenizer(Vocab vocab);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // add_special: BOS / EOS as the vocabulary asks (add_bos / add_eos).
  // parse_special: control tokens written in the text (e.g. "<|im_start|>") become their ids;
  // without it they are tokenized as plain text. User-defined added tokens always match.
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;
  std::vector<int32_t> encode(std::string_view text, const EncodeOptions& options) const;
  // The fill-in-the-middle prompt (the vocabulary must have FIM markers, Vocab::has_fim), in the
  // prefix-suffix-middle order of llama.cpp's infill: [BOS when the vocabulary adds one]
  // <prefix marker> prefix <suffix marker> suffix <middle marker>; the model writes the middle.
  // Control-token text in prefix or suffix stays text. Throws velocity::Error without markers.
  std::vector<int32_t> encode_fim(std::string_view prefix, std::string_view suffix,
                                  const std::atomic<bool>* cancel = nullptr) const;
  // llama.cpp's /infill prompt: [extra] [BOS when added] <pre> prefix cursor <suf> suffix <mid>,
  // where extra is [<rep> "myproject\n" when the vocabulary has Vocab::fim_rep], then per chunk
  // <sep> filename "\n" text and a last <sep> "filename\n" when it has Vocab::fim_sep, else per
  // chunk "\n\n--- snippet ---\n\n" text. prefix and cursor are tokenized apart, as llama.cpp
  // does.
  // With limits, the parts are cut as llama.cpp's server cuts them (n_batch is its logical batch,
  // 2048 by default): the prefix keeps its last 3/4 n_batch tokens, the suffix its first
  // n_batch/4 - 2 - (cursor tokens), the extra context its last n_ctx - n_batch - 2 n_predict.
  struct InfillChunk {
    std::string filename, text;
  };
  struct InfillLimits {
    int64_t n_batch = 0;    // 0: no cut
    int64_t n_ctx = 0;
    int64_t n_predict = 0;  // tokens to leave room for (0 when unlimited)
  };
  std::vector<int32_t> encode_infill(std::string_view prefix, std::string_view cursor, std::string_view suffix,
                                     std::span<const InfillChunk> extra, const InfillLimits& limits,
                                     const std::atomic<bool>* cancel = nullptr) const;
  std::vector<int32_t> encode_infill(std::string_view prefix, std::string_view cursor, std::string_view suffix,
                                     std::span<const InfillChunk> extra) const;  // no cut

  // The bytes a token stands for: byte-level decoded (BPE) or ▁ -> space and <0xXX> -> byte
  // (SPM); control tokens give their text. May be a partial UTF-8 sequence. Empty for a bad id.
  std::string token_to_piece(int32_t id) const;
  // Concatenated pieces, SPM's leading space of the prefix removed, invalid UTF-8 -> U+FFFD.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;

  const Vocab& vocab() const { return vocab_; }
  int32_t n_vocab() const { return static_cast<int32_t>(vocab_.size()); }
  int32_t token_id(std::string_view text) const;  // kNoToken when absent
  bool is_special(int32_t id) const;             // control / unknown: skipped by skip_special
  // Where the texts of control and unknown tokens occur in `text` (what parse_special would turn
  // into their ids, were they not overlapped by another match): merged byte ranges, in order.
  // Returns the first such token's id, or kNoToken when there is none.
  int32_t find_control_texts(std::string_view text, std::vector<TextRange>& out) const;

 private:
  struct CancelPoll;
  void encode_text(std::string_view text, bool after_special, CancelPoll& poll, std::vector<int32_t>& out) const;

  Vocab vocab_;
  TokenMap token_ids_;
  std::unique_ptr<PreTokenizer> pre_;
  std::unique_ptr<BpeModel> bpe_;
  std::unique_ptr<SpmModel> spm_;
  std::unique_ptr<SpecialSplitter> special_;
};

}  // namespace velocity::tokenizer
