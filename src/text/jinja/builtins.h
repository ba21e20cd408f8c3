// Built-in filters, tests, global functions, methods and operators of the Jinja interpreter.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "text/jinja/value.h"

namespace mtplx::jinja {

// Reports a template error (throws; never returns).
using Raise = std::function<void(std::string_view)>;
using Kwargs = std::vector<std::pair<std::string, Value>>;

Value binary_op(std::string_view op, const Value& a, const Value& b, const Raise& raise);
// args[0] is the filtered value.
Value apply_filter(std::string_view name, std::vector<Value>& args, Kwargs& kwargs, const Raise& raise);
// args[0] is the tested value.
bool apply_test(std::string_view name, std::vector<Value>& args, const Raise& raise);
Value call_global(std::string_view name, std::vector<Value>& args, Kwargs& kwargs, const Raise& raise);
Value call_method(const Value& self, std::string_view method, std::vector<Value>& args, Kwargs& kwargs,
                  const Raise& raise);
// Methods of dicts (items, keys, values, get): they win over keys of the same name, as getattr does.
bool is_dict_method(std::string_view name);

}  // namespace mtplx::jinja
