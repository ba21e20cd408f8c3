// Values of the Jinja interpreter, with Python semantics (what transformers' Jinja2 environment does):
// truthiness, equality, str() and json.dumps(ensure_ascii=False) output. Lists, dicts and namespaces are
// shared by reference, like Python objects.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace mtplx::jinja {

class Value;
using Array = std::vector<Value>;
// Insertion-ordered dict (Python 3.7+ order, which tojson keeps).
struct Object {
  std::vector<std::pair<std::string, Value>> entries;
  bool is_namespace = false;
  const Value* find(std::string_view key) const;
  void set(std::string_view key, Value value);
};
// A callable (macro or built-in function): positional args and keyword args.
using Function = std::function<Value(std::vector<Value>&, std::vector<std::pair<std::string, Value>>&)>;

struct Undefined {
  std::string name;  // what was looked up, for error messages
};

class Value {
 public:
  using Storage = std::variant<Undefined, std::nullptr_t, bool, int64_t, double, std::string,
                               std::shared_ptr<Array>, std::shared_ptr<Object>, std::shared_ptr<Function>>;

  Value() = default;
  Value(Undefined u) : v_(std::move(u)) {}
  Value(std::nullptr_t) : v_(nullptr) {}
  Value(bool b) : v_(b) {}
  Value(int i) : v_(static_cast<int64_t>(i)) {}
  Value(int64_t i) : v_(i) {}
  Value(double d) : v_(d) {}
  Value(std::string s) : v_(std::move(s)) {}
  Value(const char* s) : v_(std::string(s)) {}
  Value(Array a) : v_(std::make_shared<Array>(std::move(a))) {}
  Value(Object o) : v_(std::make_shared<Object>(std::move(o))) {}
  Value(Function f) : v_(std::make_shared<Function>(std::move(f))) {}

  static Value from_json(const nlohmann::ordered_json& j);

  bool is_undefined() const { return std::holds_alternative<Undefined>(v_); }
  bool is_none() const { return std::holds_alternative<std::nullptr_t>(v_); }
  bool is_bool() const { return std::holds_alternative<bool>(v_); }
  bool is_int() const { return std::holds_alternative<int64_t>(v_); }
  bool is_float() const { return std::holds_alternative<double>(v_); }
  bool is_number() const { return is_int() || is_float(); }
  bool is_string() const { return std::holds_alternative<std::string>(v_); }
  bool is_array() const { return std::holds_alternative<std::shared_ptr<Array>>(v_); }
  bool is_object() const { return std::holds_alternative<std::shared_ptr<Object>>(v_); }
  bool is_callable() const { return std::holds_alternative<std::shared_ptr<Function>>(v_); }

  bool as_bool() const { return std::get<bool>(v_); }
  int64_t as_int() const { return std::get<int64_t>(v_); }
  double as_number() const {
    return is_int() ? static_cast<double>(as_int()) : is_bool() ? as_bool() : std::get<double>(v_);
  }
  const std::string& as_string() const { return std::get<std::string>(v_); }
  Array& array() const { return *std::get<std::shared_ptr<Array>>(v_); }
  Object& object() const { return *std::get<std::shared_ptr<Object>>(v_); }
  Function& function() const { return *std::get<std::shared_ptr<Function>>(v_); }
  const Undefined& undefined() const { return std::get<Undefined>(v_); }

  bool truthy() const;
  // Python's str(): None, True, 1.5, ['a', 1], {'k': 'v'}; undefined is empty.
  std::string str() const;
  // Python's repr() (strings quoted).
  std::string repr() const;
  // json.dumps(value, ensure_ascii=False, indent=indent) with Python's separators.
  std::string to_json(std::optional<int> indent = std::nullopt) const;
  std::string type_name() const;

  friend bool operator==(const Value& a, const Value& b);

 private:
  Storage v_;
};

// Python's float repr: shortest round-trip digits, "1.0", "1e-05", "1e+16", "inf", "nan".
std::string python_float(double d);

}  // namespace mtplx::jinja
