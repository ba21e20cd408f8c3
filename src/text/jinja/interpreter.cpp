#include "text/jinja/interpreter.h"

#include <cmath>

#include "base/error.h"
#include "text/jinja/builtins.h"
#include "text/jinja/parser.h"
#include "text/jinja/template.h"

namespace mtplx::jinja {

void Interpreter::error(int line, std::string_view what) const {
  fail(what, str(name_, " line ", line));
}

void Interpreter::run(const Body& body, std::string& out) {
  if (exec(body, out) != Flow::kNormal) error(0, "'break' or 'continue' outside a loop");
}

Interpreter::Flow Interpreter::exec(const Body& body, std::string& out) {
  for (const auto& s : body) {
    Flow f = exec(*s, out);
    if (f != Flow::kNormal) return f;
  }
  return Flow::kNormal;
}

Interpreter::Flow Interpreter::exec(const Stmt& s, std::string& out) {
  switch (s.kind) {
    case Stmt::Kind::kText:
      out += s.text;
      break;
    case Stmt::Kind::kOutput:
      out += eval(*s.expr).str();
      break;
    case Stmt::Kind::kIf:
      for (const auto& [cond, body] : s.branches) {
        if (eval(*cond).truthy()) return exec(body, out);
      }
      return exec(s.else_body, out);
    case Stmt::Kind::kFor:
      return exec_for(s, out);
    case Stmt::Kind::kSet:
      exec_set(s);
      break;
    case Stmt::Kind::kSetBlock: {
      std::string captured;
      exec(s.body, captured);
      assign(s.names[0], captured);
      break;
    }
    case Stmt::Kind::kMacro:
      assign(s.text, make_macro(s));
      break;
    case Stmt::Kind::kCallBlock: {
      scopes_.emplace_back();
      const Body* body = &s.body;
      assign("caller",
             Value(Function([this, body](std::vector<Value>&, std::vector<std::pair<std::string, Value>>&) {
               std::string captured;
               exec(*body, captured);
               return Value(captured);
             })));
      out += eval(*s.expr).str();
      scopes_.pop_back();
      break;
    }
    case Stmt::Kind::kBreak:
      return Flow::kBreak;
    case Stmt::Kind::kContinue:
      return Flow::kContinue;
  }
  return Flow::kNormal;
}

Interpreter::Flow Interpreter::exec_for(const Stmt& s, std::string& out) {
  Value iterable = eval(*s.expr);
  if (!iterable.is_array() && !iterable.is_object() && !iterable.is_string() && !iterable.is_undefined()) {
    error(s.line, str("'", iterable.type_name(), "' object is not iterable"));
  }
  std::vector<Value> items = iterate(iterable);
  auto bind = [&](const Value& item) {
    if (s.names.size() == 1) {
      assign(s.names[0], item);
      return;
    }
    std::vector<Value> parts = iterate(item);
    if (parts.size() != s.names.size()) {
      error(s.line, str("cannot unpack ", parts.size(), " values into ", s.names.size(), " loop variables"));
    }
    for (size_t k = 0; k < parts.size(); ++k) assign(s.names[k], parts[k]);
  };
  if (s.filter) {  // "for x in xs if cond": loop indices count the kept items only
    std::vector<Value> kept;
    for (const auto& item : items) {
      scopes_.emplace_back();
      bind(item);
      bool keep = eval(*s.filter).truthy();
      scopes_.pop_back();
      if (keep) kept.push_back(item);
    }
    items = std::move(kept);
  }
  if (items.empty()) return exec(s.else_body, out);
  const auto n = static_cast<int64_t>(items.size());
  for (int64_t i = 0; i < n; ++i) {
    scopes_.emplace_back();
    Object loop;
    loop.entries = {
        {"index0", i},
        {"index", i + 1},
        {"revindex0", n - i - 1},
        {"revindex", n - i},
        {"first", i == 0},
        {"last", i == n - 1},
        {"length", n},
        {"previtem", i > 0 ? items[static_cast<size_t>(i - 1)] : Value(Undefined{"loop.previtem"})},
        {"nextitem", i + 1 < n ? items[static_cast<size_t>(i + 1)] : Value(Undefined{"loop.nextitem"})}};
    assign("loop", Value(std::move(loop)));
    bind(items[static_cast<size_t>(i)]);
    Flow f = exec(s.body, out);
    scopes_.pop_back();
    if (f == Flow::kBreak) break;
  }
  return Flow::kNormal;
}

void Interpreter::exec_set(const Stmt& s) {
  Value v = eval(*s.expr);
  if (s.target) {
    Value ns = eval(*s.target->args[0]);
    if (!ns.is_object() || !ns.object().is_namespace) {
      error(s.line, "only namespace() objects support attribute assignment");
    }
    ns.object().set(s.target->name, std::move(v));
    return;
  }
  if (s.names.size() == 1) {
    assign(s.names[0], std::move(v));
    return;
  }
  std::vector<Value> parts = iterate(v);
  if (parts.size() != s.names.size()) error(s.line, "wrong number of values to unpack in set");
  for (size_t k = 0; k < parts.size(); ++k) assign(s.names[k], parts[k]);
}

Value Interpreter::make_macro(const Stmt& s) {
  const Stmt* macro = &s;
  return Function([this, macro](std::vector<Value>& args,
                                std::vector<std::pair<std::string, Value>>& kwargs) {
    if (args.size() > macro->names.size()) {
      error(macro->line,
            str("macro '", macro->text, "' takes ", macro->names.size(), " arguments, got ", args.size()));
    }
    if (++depth_ > 200) error(macro->line, "macro recursion is too deep");
    scopes_.emplace_back();
    for (size_t k = 0; k < macro->names.size(); ++k) {
      Value v = Undefined{macro->names[k]};
      if (k < args.size()) {
        v = args[k];
      } else if (auto it = std::find_if(kwargs.begin(), kwargs.end(),
                                        [&](auto& kw) { return kw.first == macro->names[k]; });
                 it != kwargs.end()) {
        v = it->second;
      } else if (macro->defaults[k]) {
        v = eval(*macro->defaults[k]);
      }
      assign(macro->names[k], std::move(v));
    }
    std::string out;
    exec(macro->body, out);
    scopes_.pop_back();
    --depth_;
    return Value(out);
  });
}

Value Interpreter::lookup(std::string_view name) const {
  for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
    if (auto found = it->find(name); found != it->end()) return found->second;
  }
  return Undefined{std::string(name)};
}

Value Interpreter::eval(const Expr& e) {
  switch (e.kind) {
    case Expr::Kind::kLiteral:
      return e.value;
    case Expr::Kind::kName:
      return lookup(e.name);
    case Expr::Kind::kList:
    case Expr::Kind::kTuple: {
      Array a;
      for (const auto& x : e.args) a.push_back(eval(*x));
      return a;
    }
    case Expr::Kind::kDict: {
      Object o;
      for (const auto& [k, v] : e.pairs) {
        Value key = eval(*k);
        o.set(key.str(), eval(*v));
      }
      return o;
    }
    case Expr::Kind::kAttr:
      return eval_attr(eval(*e.args[0]), e.name, e.line);
    case Expr::Kind::kIndex:
      return eval_index(eval(*e.args[0]), eval(*e.args[1]), e.line);
    case Expr::Kind::kSlice:
      return eval_slice(e);
    case Expr::Kind::kCall:
      return eval_call(e);
    case Expr::Kind::kFilter:
      return apply_filter(e);
    case Expr::Kind::kTest:
      return apply_test(e) != e.negated;
    case Expr::Kind::kUnary: {
      Value v = eval(*e.args[0]);
      if (e.name == "not") return !v.truthy();
      if (!v.is_number() && !v.is_bool())
        error(e.line, str("bad operand type for unary ", e.name, ": '", v.type_name(), "'"));
      if (e.name == "+") return v;
      return v.is_float() ? Value(-v.as_number()) : Value(-static_cast<int64_t>(v.as_number()));
    }
    case Expr::Kind::kBinary:
      return eval_binary(e);
    case Expr::Kind::kConditional:
      if (eval(*e.args[0]).truthy()) return eval(*e.args[1]);
      return e.args[2] ? eval(*e.args[2]) : Value(Undefined{});
  }
  return Undefined{};
}

Value Interpreter::eval_attr(const Value& base, std::string_view name, int line) {
  if (base.is_object()) {
    if (const Value* v = base.object().find(name)) return *v;
    return Undefined{std::string(name)};
  }
  if (base.is_array() && !name.empty() && std::isdigit(static_cast<unsigned char>(name[0]))) {
    return eval_index(base, Value(static_cast<int64_t>(std::stoll(std::string(name)))), line);
  }
  return Undefined{std::string(name)};
}

Value Interpreter::eval_index(const Value& base, const Value& index, int line) {
  if (base.is_object()) {
    if (const Value* v = base.object().find(index.str())) return *v;
    return Undefined{index.str()};
  }
  if ((base.is_array() || base.is_string()) && (index.is_int() || index.is_bool())) {
    std::vector<Value> items = base.is_array() ? base.array() : iterate(base);
    auto n = static_cast<int64_t>(items.size());
    auto i = static_cast<int64_t>(index.as_number());
    if (i < 0) i += n;
    if (i < 0 || i >= n) return Undefined{"index out of range"};
    return items[static_cast<size_t>(i)];
  }
  if (base.is_undefined()) return base;
  error(line, str("'", base.type_name(), "' object is not subscriptable with ", index.type_name()));
}

Value Interpreter::eval_slice(const Expr& e) {
  Value base = eval(*e.args[0]);
  std::vector<Value> items = iterate(base);
  auto n = static_cast<int64_t>(items.size());
  auto part = [&](int k) -> std::optional<int64_t> {
    if (!e.args[static_cast<size_t>(k)]) return std::nullopt;
    Value v = eval(*e.args[static_cast<size_t>(k)]);
    if (v.is_none()) return std::nullopt;
    if (!v.is_int()) error(e.line, "slice indices must be integers");
    return v.as_int();
  };
  auto start = part(1), stop = part(2), step_opt = part(3);
  int64_t step = step_opt.value_or(1);
  if (step == 0) error(e.line, "slice step cannot be zero");
  // Python's slice.indices().
  auto clamp = [&](std::optional<int64_t> v, int64_t dflt) {
    if (!v) return dflt;
    int64_t x = *v < 0 ? *v + n : *v;
    if (step > 0) return std::clamp<int64_t>(x, 0, n);
    return std::clamp<int64_t>(x, -1, n - 1);
  };
  int64_t b = clamp(start, step > 0 ? 0 : n - 1), en = clamp(stop, step > 0 ? n : -1);
  Array out;
  for (int64_t i = b; step > 0 ? i < en : i > en; i += step) out.push_back(items[static_cast<size_t>(i)]);
  if (!base.is_string()) return out;
  std::string s;
  for (const auto& c : out) s += c.as_string();
  return s;
}

Value Interpreter::eval_binary(const Expr& e) {
  const std::string& op = e.name;
  if (op == "and") {
    Value a = eval(*e.args[0]);
    return a.truthy() ? eval(*e.args[1]) : a;
  }
  if (op == "or") {
    Value a = eval(*e.args[0]);
    return a.truthy() ? a : eval(*e.args[1]);
  }
  Value a = eval(*e.args[0]);
  Value b = eval(*e.args[1]);
  return binary_op(op, a, b, [&](std::string_view what) { error(e.line, what); });
}

Value Interpreter::eval_call(const Expr& e) {
  std::vector<Value> args;
  std::vector<std::pair<std::string, Value>> kwargs;
  for (size_t k = 1; k < e.args.size(); ++k) args.push_back(eval(*e.args[k]));
  for (const auto& [name, x] : e.kwargs) kwargs.emplace_back(name, eval(*x));
  const Expr& callee = *e.args[0];
  if (callee.kind == Expr::Kind::kAttr) {
    Value self = eval(*callee.args[0]);
    if (!self.is_object() || self.object().is_namespace || !self.object().find(callee.name) ||
        is_dict_method(callee.name)) {
      return call_method(self, callee.name, args, kwargs, e.line);
    }
  }
  if (callee.kind == Expr::Kind::kName) {
    Value f = lookup(callee.name);
    if (f.is_undefined())
      return call_global(callee.name, args, kwargs, [&](std::string_view w) { error(e.line, w); });
    if (!f.is_callable()) error(e.line, str("'", callee.name, "' is not callable"));
    return f.function()(args, kwargs);
  }
  Value f = eval(callee);
  if (!f.is_callable()) error(e.line, str("'", f.type_name(), "' object is not callable"));
  return f.function()(args, kwargs);
}

Value Interpreter::call_method(const Value& self, std::string_view method, std::vector<Value>& args,
                               std::vector<std::pair<std::string, Value>>& kwargs, int line) {
  if (self.is_object()) {
    if (const Value* v = self.object().find(method); v && v->is_callable())
      return v->function()(args, kwargs);
  }
  return jinja::call_method(self, method, args, kwargs, [&](std::string_view w) { error(line, w); });
}

Value Interpreter::apply_filter(const Expr& e) {
  std::vector<Value> args;
  std::vector<std::pair<std::string, Value>> kwargs;
  for (size_t k = 0; k < e.args.size(); ++k) args.push_back(eval(*e.args[k]));
  for (const auto& [name, x] : e.kwargs) kwargs.emplace_back(name, eval(*x));
  return jinja::apply_filter(e.name, args, kwargs, [&](std::string_view w) { error(e.line, w); });
}

bool Interpreter::apply_test(const Expr& e) {
  std::vector<Value> args;
  for (const auto& x : e.args) args.push_back(eval(*x));
  return jinja::apply_test(e.name, args, [&](std::string_view w) { error(e.line, w); });
}

Template::Template(std::string_view source, std::string name)
    : name_(std::move(name)), body_(std::make_shared<const Body>(parse(source, name_))) {}

std::string Template::render(const Object& variables) const {
  Interpreter interpreter(name_);
  for (const auto& [k, v] : variables.entries) interpreter.define(k, v);
  std::string out;
  interpreter.run(*body_, out);
  return out;
}

}  // namespace mtplx::jinja
