// The shape of the reference decoder: the llama2.c architecture (Karpathy, llama2.c `Config`):
// token embedding, RMSNorm, rotary attention with grouped KV heads, SwiGLU MLP and a tied or
// untied classifier. Field order and meaning follow llama2.c's seven-int checkpoint header.
#pragma once

#include <slim/core/error.hpp>
#include <slim/core/types.hpp>

namespace slim::model {

struct Config {
  Index dim = 128;                // model (residual stream) width
  Index hidden_dim = 384;         // SwiGLU inner width (w1, w3: hidden x dim; w2: dim x hidden)
  Index n_layers = 4;             // transformer blocks
  Index n_heads = 4;              // query heads; head_size = dim / n_heads
  Index n_kv_heads = 4;           // key/value heads; must divide n_heads (grouped-query attention)
  Index vocab_size = 258;         // 256 bytes + BOS + EOS for the byte tokenizer
  Index seq_len = 256;            // longest sequence forward() and the KV cache accept
  bool shared_classifier = true;  // classifier tied to token_embedding (llama2.c's default)

  Index head_size() const { return dim / n_heads; }
  Index kv_dim() const { return head_size() * n_kv_heads; }
  Index kv_group() const { return n_heads / n_kv_heads; }  // query heads per KV head

  // Throws ArgumentError naming the field and value when the shape is not a valid model.
  void validate() const {
    const char* where = "model::Config::validate: ";
    require<ArgumentError>(dim > 0, where, "dim ", dim, " must be positive");
    require<ArgumentError>(hidden_dim > 0, where, "hidden_dim ", hidden_dim, " must be positive");
    require<ArgumentError>(n_layers > 0, where, "n_layers ", n_layers, " must be positive");
    require<ArgumentError>(n_heads > 0, where, "n_heads ", n_heads, " must be positive");
    require<ArgumentError>(n_kv_heads > 0, where, "n_kv_heads ", n_kv_heads, " must be positive");
    require<ArgumentError>(vocab_size > 0, where, "vocab_size ", vocab_size, " must be positive");
    require<ArgumentError>(seq_len > 0, where, "seq_len ", seq_len, " must be positive");
    require<ArgumentError>(dim % n_heads == 0, where, "n_heads ", n_heads, " does not divide dim ",
                           dim);
    require<ArgumentError>(head_size() % 2 == 0, where, "head_size ", head_size(),
                           " (dim / n_heads) must be even for rotary embeddings");
    require<ArgumentError>(n_heads % n_kv_heads == 0, where, "n_kv_heads ", n_kv_heads,
                           " does not divide n_heads ", n_heads);
  }

  friend bool operator==(const Config& a, const Config& b) {
    return a.dim == b.dim && a.hidden_dim == b.hidden_dim && a.n_layers == b.n_layers &&
           a.n_heads == b.n_heads && a.n_kv_heads == b.n_kv_heads && a.vocab_size == b.vocab_size &&
           a.seq_len == b.seq_len && a.shared_classifier == b.shared_classifier;
  }
  friend bool operator!=(const Config& a, const Config& b) { return !(a == b); }
};

}  // namespace slim::model
