// Per-sequence model state. Full-attention layers keep a KV cache that can be truncated; GDN layers keep a
// conv state (last K-1 inputs) and a recurrent state that cannot be truncated, so speculative verify
// captures the state after each row and rollback installs the state of the last kept row.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "backend/tensor.h"

namespace mtplx {

struct KvCache {
  Tensor k, v;  // [capacity, Hkv * D]
};

struct LayerState {
  KvCache kv;        // full-attention layers
  Tensor conv;       // GDN: [K-1, conv_dim]
  Tensor recurrent;  // GDN: [Hv, Dk * Dv]
  // GDN, filled by a forward with capture on: the conv and recurrent state after each of its rows but the
  // last (that one is conv / recurrent themselves); buffers sized for the widest forward so far, the first
  // captured_rows - 1 rows valid.
  Tensor conv_rows;       // [>= rows, (K-1) * conv_dim]
  Tensor recurrent_rows;  // [>= rows, Hv * Dk * Dv]
};

// One recorded step (Qwen35Model::forward or mtp_forward of a few rows on a backend with graphs). The graph
// reads this state's buffers, so it belongs to the state.
struct StepGraph {
  std::unique_ptr<Backend::Graph> graph;
  Tensor input;   // MTP steps: the hidden rows the graph reads (the caller's rows are copied in first)
  Tensor output;  // what the graph writes (copied out after each replay)
};

struct ModelState {
  std::vector<LayerState> layers;
  int64_t position = 0;        // tokens in the trunk's state
  int64_t captured_from = -1;  // position of the first row of the last captured forward, -1 if none
  int64_t captured_rows = 0;
  int64_t capacity = 0;  // maximum tokens
  KvCache mtp_kv;        // the MTP head's own cache; row p holds the slot at RoPE position p
  int64_t mtp_length = 0;
  // Step graphs by shape (see Qwen35Model). Shared by copies of the state, which share its buffers too.
  std::shared_ptr<std::map<int, StepGraph>> graphs = std::make_shared<std::map<int, StepGraph>>();
};

}  // namespace mtplx
