// Deterministic corpus of chat-template inputs (messages, tools, flags) covering what real clients send.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

namespace mtplx::test {

// Each case is an object of template variables: messages, tools?, add_generation_prompt,
// enable_thinking?, preserve_thinking?. `arguments_as_string` renders some tool-call arguments as JSON
// strings (as OpenAI clients send them) instead of objects.
std::vector<nlohmann::ordered_json> conversation_corpus(uint32_t seed, size_t count,
                                                        bool arguments_as_string);

}  // namespace mtplx::test
