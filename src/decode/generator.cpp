#include "decode/generator.h"

#include <algorithm>
#include <array>
#include <memory>
#include <optional>

#include "base/error.h"
#include "base/timing.h"
#include "decode/accept.h"
#include "decode/depth_policy.h"
#include "decode/rng.h"

namespace mtplx {

void GenerationConfig::validate() const {
  target.validate();
  draft.validate();
  require(mtp_depth >= 0 && mtp_depth <= kMaxDraftTokens, str("MTP depth ", mtp_depth, " is out of range"),
          "--mtp-depth", str("use 0..", kMaxDraftTokens));
  require(max_tokens >= 0, str("max tokens must be >= 0 (got ", max_tokens, ")"), "--max-tokens");
  require(context >= 0, str("context must be >= 0 (got ", context, ")"), "--context");
}

std::string_view finish_reason_name(FinishReason reason) {
  switch (reason) {
    // OpenAI's convention: an eos and a stop string both finish with "stop" (front ends that need to tell
    // them apart report the matched stop string).
    case FinishReason::kEos:
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kContext:
      return "context";
  }
  return "?";
}

double GenerationStats::prefill_tokens_per_second() const {
  return prefill_seconds > 0 ? prompt_tokens / prefill_seconds : 0.0;
}
double GenerationStats::decode_tokens_per_second() const {
  return decode_seconds > 0 && generated_tokens > 1 ? (generated_tokens - 1) / decode_seconds : 0.0;
}
double GenerationStats::tokens_per_cycle() const {
  return cycles > 0 ? static_cast<double>(generated_tokens - 1) / cycles : 0.0;
}
double GenerationStats::acceptance(int position) const {
  const auto i = static_cast<size_t>(position);
  return i < drafted_at.size() && drafted_at[i] > 0 ? static_cast<double>(accepted_at[i]) / drafted_at[i]
                                                    : 0.0;
}

Generator::Generator(Qwen35Model& model, DraftHead* draft_head) : model_(model), draft_head_(draft_head) {}

namespace {

// One generation: its state, buffers and the steps of the cycle.
class Run {
 public:
  Run(Qwen35Model& model, DraftHead* head, std::span<const int32_t> prompt, const GenerationConfig& config,
      const TokenSink& sink)
      : model_(model),
        head_(head),
        prompt_(prompt.begin(), prompt.end()),
        config_(config),
        sink_(sink),
        vocab_(static_cast<int>(model.config().vocab_size)),
        rng_(config.seed),
        target_(config.target, vocab_),
        draft_(config.draft, head ? static_cast<int>(head->size()) : vocab_),
        policy_(config.mtp_depth, config.adaptive_depth) {
    device_ = make_device_sampler();
    // Drafts picked or drawn where the logits are stay there: greedy ones (DraftHead::greedy_pick) and the
    // device sampler's draws (DeviceSampler::draw_draft_into).
    if (config.device_draft_ids && config.mtp_depth > 0 && head != nullptr &&
        (draft_.config().greedy() || device_ != nullptr))
      slots_ = head->token_slots(2 * kMaxDraftTokens + 1);  // drafts, then the verify's greedy picks
    result_.stats.device_sampling = device_ != nullptr;
    result_.stats.prompt_tokens = static_cast<int64_t>(prompt.size());
    result_.stats.drafted_at.assign(config.mtp_depth, 0);
    result_.stats.accepted_at.assign(config.mtp_depth, 0);
  }

  GenerationResult execute() {
    Stopwatch clock;
    if (!prefill()) return finish_now(clock, 0);
    const double prefill_time = clock.seconds();
    clock.restart();
    while (!finished_) cycle();
    result_.stats.prefill_seconds = prefill_time;
    result_.stats.decode_seconds = clock.seconds();
    if (config_.final_logits) forward_last_token();
    return std::move(result_);
  }

 private:
  GenerationResult finish_now(const Stopwatch& clock, double decode) {
    result_.stats.prefill_seconds = clock.seconds();
    result_.stats.decode_seconds = decode;
    return std::move(result_);
  }

  // The trunk holds every emitted token but the last: run it and keep the next-token logits.
  void forward_last_token() {
    // After an eos the trunk may already hold the last emitted token; the chat front end re-runs from text.
    if (result_.finish == FinishReason::kEos) return;
    if (result_.tokens.empty() || state_.position + 1 > state_.capacity) return;
    const int32_t last = result_.tokens.back();
    const Tensor logits = model_.logits(model_.forward({&last, 1}, state_));
    result_.final_logits.resize(logits.numel());
    model_.backend().download(logits, result_.final_logits);
  }

  int64_t capacity() const {
    const int64_t wanted = config_.context > 0 ? config_.context
                                               : static_cast<int64_t>(prompt_.size()) + config_.max_tokens +
                                                     config_.mtp_depth + 1;
    return std::min<int64_t>(wanted, model_.config().max_position_embeddings);
  }

  // Runs the prompt and draws the first token. Returns false when nothing is to be generated.
  bool prefill() {
    require(!prompt_.empty(), "empty prompt", "", "give at least one prompt token");
    require(static_cast<int64_t>(prompt_.size()) < capacity(),
            str("prompt of ", prompt_.size(), " tokens does not fit the context of ", capacity(), " tokens"),
            "", "shorten the prompt or raise the context size");
    if (config_.max_tokens == 0) {
      result_.finish = FinishReason::kLength;
      return false;
    }
    state_ = model_.new_state(capacity());
    if (config_.mtp_depth > 0) model_.reserve_verify_rows(state_, config_.mtp_depth + 1);
    const Tensor hidden = model_.forward(prompt_, state_);
    const Tensor last = model_.logits(hidden.row_view(hidden.rows - 1, 1));
    const int32_t first = draw_first(last);
    if (config_.mtp_depth > 0) {
      pending_tokens_.assign(prompt_.begin() + 1, prompt_.end());
      pending_tokens_.push_back(first);
      pending_hidden_ = hidden;
      pending_pos0_ = 0;
    }
    lead_ = first;
    emit({&first, 1}, 1);
    return !finished_;
  }

  // Greedy without penalties: the target token is the logits' argmax, which the backend picks where the
  // logits are (Backend::greedy_tokens, the same rule as argmax), so the rows need not come to the host.
  bool greedy_target() const { return config_.target.greedy() && !config_.target.has_penalties(); }

  // Sampled under a top-k cut: the rows come to the host as their k best entries (Backend::top_k), picked
  // where the logits are. 0 when the whole row is needed.
  int target_candidates() const { return config_.device_top_k ? target_.candidates_needed() : 0; }
  int draft_candidates() const { return config_.device_top_k ? draft_.candidates_needed() : 0; }

  // Sampling and acceptance on the device (GenerationConfig::device_sampling): for a target under a top-k
  // cut and drafts that are greedy or under a top-k cut; null otherwise (the host path). One per generation:
  // its device memory comes from the backend's pool; a trimmed head's id map goes with it for draws that
  // come to the host (drafts kept in token slots map through the slots' copy).
  std::unique_ptr<DeviceSampler> make_device_sampler() {
    if (!config_.device_sampling || greedy_target() || target_candidates() == 0) return nullptr;
    const bool drafting = config_.mtp_depth > 0 && head_ != nullptr;
    const bool greedy_drafts = draft_.config().greedy();
    if (drafting && !greedy_drafts && draft_candidates() == 0) return nullptr;
    const auto filter = [](const Sampler& s, int64_t columns) {
      const SamplerConfig& c = s.config();
      return TopKFilter{s.candidates_needed(), c.temperature, c.top_p, c.min_p, columns};
    };
    const TopKFilter target = filter(target_, vocab_);
    std::optional<TopKFilter> draft;
    if (drafting && !greedy_drafts) draft = filter(draft_, head_->size());
    return model_.backend().device_sampler(target, draft ? &*draft : nullptr,
                                           draft ? head_->ids() : std::span<const int32_t>{},
                                           drafting ? config_.mtp_depth : 0);
  }

  // Device acceptance of `drafts` (none: a plain draw) over the target rows `logits`. The uniforms are drawn
  // ahead, then the Rng is wound to where the host path would leave it: one per tested draft, plus one.
  Verdict accept_on_device(const Tensor& logits, std::span<const int32_t> drafts,
                           TokenSlots* draft_slots = nullptr) {
    const int K = static_cast<int>(drafts.size());
    const Rng start = rng_;
    for (int i = 0; i <= K; ++i) uniforms_[static_cast<size_t>(i)] = rng_.uniform();
    Verdict v;
    v.drafted = K;
    v.accepted = device_->accept(logits, drafts, std::span(uniforms_).first(K + 1),
                                 std::span(v.tokens).first(K + 1), draft_slots);
    const int used = v.accepted + (v.accepted < K ? 1 : 0) + 1;
    rng_ = start;
    for (int i = 0; i < used; ++i) rng_.uniform();
    return v;
  }

  // The first token, from the logits row after the prompt: picked by the backend when greedy, else
  // sampled on the device or the host.
  int32_t draw_first(const Tensor& last) {
    if (greedy_target()) return model_.backend().greedy_tokens(last)[0];
    if (device_) return accept_on_device(last, {}).tokens[0];
    if (const int k = target_candidates()) {
      model_.backend().top_k(last, k, candidates_);
      target_.filter_top_k(candidates_, p_.emplace_back());
    } else {
      logits_.resize(last.numel());
      model_.backend().download(last, logits_);
      history_.assign(result_.tokens.begin(), result_.tokens.end());
      target_.filter(logits_, TokenHistory{prompt_, history_}, p_.emplace_back());
    }
    const int32_t token = sample(p_.back(), rng_);
    p_.clear();
    return token;
  }

  // Depth for this cycle, clipped to the tokens and positions left.
  int cycle_depth() const {
    if (config_.mtp_depth == 0 || head_ == nullptr) return 0;
    const int64_t tokens_left = config_.max_tokens - static_cast<int64_t>(result_.tokens.size());
    const int64_t positions_left = state_.capacity - state_.position;
    return static_cast<int>(std::clamp<int64_t>(std::min<int64_t>(policy_.depth(), tokens_left - 1), 0,
                                                std::max<int64_t>(0, positions_left - 1)));
  }

  void cycle() {
    if (state_.position + 1 > state_.capacity) {
      result_.finish = FinishReason::kContext;
      finished_ = true;
      return;
    }
    const int K = cycle_depth();
    draft(K);
    verify(K);
  }

  // Drafts K tokens with the MTP head; fills drafts_ and q_, or with token slots leaves the ids there
  // (drafts_ holds placeholders until verify() reads them; the device sampler keeps q).
  void draft(int K) {
    drafts_.clear();
    q_.resize(K);
    if (K == 0) return;
    Tensor h = model_.mtp_forward(pending_tokens_, pending_hidden_, pending_pos0_, state_);
    int64_t position = pending_pos0_ + h.rows - 1;
    h = h.row_view(h.rows - 1, 1);
    for (int s = 0; s < K; ++s) {
      const bool greedy = draft_.config().greedy();
      if (slots_) {  // the id stays in slot s, read by the next step and the verify where it is
        if (greedy)
          head_->greedy_pick(h, *slots_, s);
        else
          device_->draw_draft_into(head_->project(h), s, rng_.uniform(), *slots_, s);
        drafts_.push_back(0);  // a placeholder in range
      } else if (greedy) {     // q is a point mass: only the token leaves the device
        drafts_.push_back(head_->greedy_token(h));
        q_[s].reset_sparse(vocab_);
        q_[s].push(drafts_.back(), 1.0f);
      } else if (device_) {  // q stays on the device for the verify
        drafts_.push_back(device_->draw_draft(head_->project(h), s, rng_.uniform()));
      } else {
        draft_distribution(h, q_[s]);
        drafts_.push_back(sample(q_[s], rng_));
      }
      if (s + 1 < K) {
        const SlotRows picked{slots_.get(), s, 0, 1};
        h = model_.mtp_forward({&drafts_.back(), 1}, h, ++position, state_, slots_ ? &picked : nullptr);
      }
    }
  }

  // q over the whole vocabulary from the draft head's logits for row h (mapping a trimmed head's ids).
  void draft_distribution(const Tensor& h, Distribution& q) {
    const bool trimmed = !head_->ids().empty();
    Distribution& head_q = trimmed ? local_q_ : q;
    if (const int k = draft_candidates()) {
      head_->top_k(h, k, candidates_);
      draft_.filter_top_k(candidates_, head_q);
    } else {
      draft_.filter(head_->logits(h), head_q);
    }
    if (!trimmed) return;
    const auto ids = head_->ids();
    q.reset_sparse(vocab_);
    for (int i = 0; i < local_q_.size(); ++i) q.push(ids[local_q_.id_at(i)], local_q_.probs()[i]);
  }

  void verify(int K) {
    rows_.assign(1, lead_);
    rows_.insert(rows_.end(), drafts_.begin(), drafts_.end());
    const int64_t pos0 = state_.position;
    const bool slotted = slots_ && K > 0;
    const SlotRows drafted{slots_.get(), 0, 1, K};
    const Tensor hidden =
        model_.forward(rows_, state_, {GdnMode::kAuto, K > 0, slotted ? &drafted : nullptr});
    const Tensor logits = model_.logits(hidden);
    if (slotted && !device_) read_slotted_drafts(logits, K);  // the device sampler reads them where they are
    Verdict device_verdict;
    if (greedy_target()) {
      if (!slotted) argmaxes_ = model_.backend().greedy_tokens(logits);
    } else if (device_) {
      device_verdict = accept_on_device(logits, drafts_, slotted ? slots_.get() : nullptr);
    } else if (const int k = target_candidates()) {
      model_.backend().top_k(logits, k, candidates_);
    } else {
      logits_.resize(logits.numel());
      model_.backend().download(logits, logits_);
    }
    const Verdict verdict = device_ ? device_verdict : judge(K);
    const int kept = emit(verdict.emitted(), verdict.count());
    if (K > 0) model_.rollback(state_, std::max(1, std::min(kept, verdict.accepted + 1)));
    record(K, verdict);
    if (finished_) return;
    lead_ = verdict.emitted().back();
    if (config_.mtp_depth > 0) {
      pending_tokens_.assign(verdict.emitted().begin(), verdict.emitted().end());
      pending_hidden_ = hidden.row_view(0, verdict.count());
      pending_pos0_ = pos0;
    }
  }

  // The greedy drafts left in slots 0..K-1, and with a greedy target the verify rows' picks (slots
  // K..2K), read in one wait for the device; q of each draft is the point mass on it.
  void read_slotted_drafts(const Tensor& logits, int K) {
    const bool targets = greedy_target();
    if (targets) model_.backend().greedy_pick(logits, *slots_, K, false);
    const auto ids = slots_->read(0, targets ? 2 * K + 1 : K);
    drafts_.assign(ids.begin(), ids.begin() + K);
    if (targets) argmaxes_.assign(ids.begin() + K, ids.end());
    for (int s = 0; s < K; ++s) {
      q_[s].reset_sparse(vocab_);
      q_[s].push(drafts_[s], 1.0f);
    }
  }

  Verdict judge(int K) {
    const auto row = [&](int i) {
      return std::span<const float>(logits_).subspan(size_t(i) * vocab_, vocab_);
    };
    if (greedy_target()) return verify_greedy(drafts_, argmaxes_);  // argmaxes_ from verify()
    p_.resize(K + 1);
    if (const int k = target_candidates()) {  // candidates_ from verify()
      for (int i = 0; i <= K; ++i)
        target_.filter_top_k(std::span<const ScoredToken>(candidates_).subspan(size_t(i) * k, k), p_[i]);
      return verify_sampled(drafts_, q_, p_, rng_, residual_);
    }
    for (int i = 0; i <= K; ++i) {
      history_.assign(result_.tokens.begin(), result_.tokens.end());
      history_.insert(history_.end(), drafts_.begin(), drafts_.begin() + i);
      target_.filter(row(i), TokenHistory{prompt_, history_}, p_[i]);
    }
    return verify_sampled(drafts_, q_, p_, rng_, residual_);
  }

  // Emits tokens until a stop; returns how many were emitted (an eos counts as the stop point).
  int emit(std::span<const int32_t> tokens, int count) {
    for (int i = 0; i < count; ++i) {
      const int32_t token = tokens[i];
      if (std::find(config_.eos_ids.begin(), config_.eos_ids.end(), token) != config_.eos_ids.end()) {
        result_.finish = FinishReason::kEos;
        finished_ = true;
        return i;
      }
      result_.tokens.push_back(token);
      ++result_.stats.generated_tokens;
      const bool more = !sink_ || sink_(token);
      if (!more) {
        result_.finish = FinishReason::kStop;
        finished_ = true;
        return i + 1;
      }
      if (static_cast<int64_t>(result_.tokens.size()) >= config_.max_tokens) {
        result_.finish = FinishReason::kLength;
        finished_ = true;
        return i + 1;
      }
    }
    return count;
  }

  void record(int K, const Verdict& verdict) {
    ++result_.stats.cycles;
    for (int i = 0; i < K && i <= verdict.accepted; ++i) {
      ++result_.stats.drafted_at[i];
      if (i < verdict.accepted) ++result_.stats.accepted_at[i];
    }
    policy_.update(K, verdict.accepted);
  }

  Qwen35Model& model_;
  DraftHead* head_;
  std::vector<int32_t> prompt_;
  const GenerationConfig& config_;
  const TokenSink& sink_;
  int vocab_;
  Rng rng_;
  Sampler target_;
  Sampler draft_;
  DepthPolicy policy_;
  ModelState state_;
  GenerationResult result_;
  bool finished_ = false;

  int32_t lead_ = 0;
  std::vector<int32_t> pending_tokens_;  // MTP slots to (re)write before the next draft: token after each row
  Tensor pending_hidden_;                // [pending, H] verified trunk hidden states for those slots
  int64_t pending_pos0_ = 0;             // RoPE position of the first pending slot

  std::vector<int32_t> drafts_;          // [K]
  std::vector<int32_t> rows_;            // [K + 1] verify input
  std::vector<float> logits_;            // [K + 1, V] host copy of the verify logits
  std::vector<Distribution> q_;          // [K]
  std::vector<Distribution> p_;          // [K + 1]
  std::vector<int32_t> argmaxes_;        // [K + 1] greedy target tokens of the verify rows
  std::vector<ScoredToken> candidates_;  // [rows, k] top-k entries of the rows last picked (Backend::top_k)
  std::vector<int32_t> history_;         // generated tokens + drafts before a row (penalties)
  Distribution local_q_, residual_;
  std::unique_ptr<DeviceSampler> device_;              // null: filters and acceptance on the host
  std::unique_ptr<TokenSlots> slots_;                  // null: drafts come to the host one by one
  std::array<float, kMaxDraftTokens + 1> uniforms_{};  // a device acceptance's draws
};

}  // namespace

GenerationResult Generator::generate(std::span<const int32_t> prompt, const GenerationConfig& config,
                                     const TokenSink& sink) {
  config.validate();
  require(config.mtp_depth == 0 || draft_head_ != nullptr, "MTP decoding needs a draft head", "",
          "this checkpoint has no MTP head: use --mtp-depth 0");
  Run run(model_, draft_head_, prompt, config, sink);
  return run.execute();
}

}  // namespace mtplx
