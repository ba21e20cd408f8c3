// Evaluates a parsed template. Internal to src/text/jinja; use Template.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "text/jinja/ast.h"

namespace mtplx::jinja {

class Interpreter {
 public:
  explicit Interpreter(std::string_view template_name) : name_(template_name) { scopes_.emplace_back(); }

  void define(std::string name, Value v) { scopes_.front()[std::move(name)] = std::move(v); }
  void run(const Body& body, std::string& out);

  [[noreturn]] void error(int line, std::string_view what) const;

 private:
  enum class Flow { kNormal, kBreak, kContinue };
  using Scope = std::map<std::string, Value, std::less<>>;

  Flow exec(const Body& body, std::string& out);
  Flow exec(const Stmt& s, std::string& out);
  Flow exec_for(const Stmt& s, std::string& out);
  void exec_set(const Stmt& s);
  Value make_macro(const Stmt& s);

  Value eval(const Expr& e);
  Value eval_binary(const Expr& e);
  Value eval_attr(const Value& base, std::string_view name, int line);
  Value eval_index(const Value& base, const Value& index, int line);
  Value eval_slice(const Expr& e);
  Value eval_call(const Expr& e);
  Value apply_filter(const Expr& e);
  bool apply_test(const Expr& e);
  Value call_method(const Value& self, std::string_view method, std::vector<Value>& args,
                    std::vector<std::pair<std::string, Value>>& kwargs, int line);

  Value lookup(std::string_view name) const;
  void assign(const std::string& name, Value v) { scopes_.back()[name] = std::move(v); }

  std::string name_;
  std::vector<Scope> scopes_;
  int depth_ = 0;  // macro recursion guard
};

// Items of an iterable value for `for` loops and filters: list elements, dict keys, string characters.
std::vector<Value> iterate(const Value& v);

}  // namespace mtplx::jinja
