#include "text/jinja/builtins.h"

#include <utf8proc.h>

#include <algorithm>
#include <cmath>
#include <ctime>

#include "base/error.h"
#include "text/jinja/interpreter.h"
#include "text/utf8.h"

namespace mtplx::jinja {

namespace {

[[noreturn]] void raise_now(const Raise& raise, std::string_view what) {
  raise(what);
  fail(what);  // raise always throws; this keeps the compiler informed
}

std::vector<char32_t> code_points(std::string_view s) {
  std::vector<char32_t> out;
  for (size_t i = 0; i < s.size();) out.push_back(text::next_code_point(s, i));
  return out;
}

std::string from_code_points(const std::vector<char32_t>& cps, size_t b, size_t e) {
  std::string out;
  for (size_t i = b; i < e; ++i) text::append_utf8(out, cps[i]);
  return out;
}

// str.isspace() in Python.
bool is_py_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// Python's str.strip / lstrip / rstrip with an optional set of characters.
std::string py_strip(std::string_view s, const Value* chars, bool left, bool right) {
  std::vector<char32_t> cps = code_points(s);
  std::vector<char32_t> set;
  bool use_set = chars && chars->is_string();
  if (use_set) set = code_points(chars->as_string());
  auto strip = [&](char32_t c) {
    return use_set ? std::find(set.begin(), set.end(), c) != set.end() : is_py_space(c);
  };
  size_t b = 0, e = cps.size();
  if (left) {
    while (b < e && strip(cps[b])) ++b;
  }
  if (right) {
    while (e > b && strip(cps[e - 1])) --e;
  }
  return from_code_points(cps, b, e);
}

std::string map_case(std::string_view s, bool upper) {
  std::string out;
  for (char32_t c : code_points(s)) {
    auto m = upper ? utf8proc_toupper(static_cast<utf8proc_int32_t>(c))
                   : utf8proc_tolower(static_cast<utf8proc_int32_t>(c));
    text::append_utf8(out, static_cast<char32_t>(m));
  }
  return out;
}

Array py_split(std::string_view s, const Value* sep, int64_t maxsplit) {
  Array out;
  if (!sep || sep->is_none()) {  // runs of whitespace, no empty strings
    std::vector<char32_t> cps = code_points(s);
    size_t i = 0;
    while (i < cps.size()) {
      while (i < cps.size() && is_py_space(cps[i])) ++i;
      if (i == cps.size()) break;
      size_t j = i;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
        j = cps.size();
        while (j > i && is_py_space(cps[j - 1])) --j;
      } else {
        while (j < cps.size() && !is_py_space(cps[j])) ++j;
      }
      out.push_back(from_code_points(cps, i, j));
      i = j;
    }
    return out;
  }
  const std::string& d = sep->as_string();
  size_t pos = 0;
  while (true) {
    size_t hit = s.find(d, pos);
    if (hit == std::string_view::npos || (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit)) {
      out.push_back(std::string(s.substr(pos)));
      return out;
    }
    out.push_back(std::string(s.substr(pos, hit - pos)));
    pos = hit + d.size();
  }
}

std::string py_replace(std::string_view s, std::string_view from, std::string_view to, int64_t count) {
  std::string out;
  size_t pos = 0;
  int64_t done = 0;
  if (from.empty()) {  // Python inserts `to` between characters
    std::vector<char32_t> cps = code_points(s);
    for (size_t i = 0; i <= cps.size(); ++i) {
      if (count < 0 || done < count) {
        out += to;
        ++done;
      }
      if (i < cps.size()) text::append_utf8(out, cps[i]);
    }
    return out;
  }
  while (count < 0 || done < count) {
    size_t hit = s.find(from, pos);
    if (hit == std::string_view::npos) break;
    out.append(s.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
    ++done;
  }
  out.append(s.substr(pos));
  return out;
}

const Value* kwarg(const Kwargs& kwargs, std::string_view name) {
  for (const auto& [k, v] : kwargs) {
    if (k == name) return &v;
  }
  return nullptr;
}

// Positional argument `i` (after the subject) or keyword `name`, or nullptr.
const Value* arg(const std::vector<Value>& args, size_t i, const Kwargs& kwargs, std::string_view name) {
  if (i < args.size()) return &args[i];
  return kwarg(kwargs, name);
}

bool affix_match(const Value& self, const Value& affix, bool prefix) {
  auto one = [&](const std::string& a) {
    const std::string& s = self.as_string();
    if (a.size() > s.size()) return false;
    return prefix ? s.compare(0, a.size(), a) == 0 : s.compare(s.size() - a.size(), a.size(), a) == 0;
  };
  if (affix.is_array()) {
    return std::any_of(affix.array().begin(), affix.array().end(),
                       [&](const Value& a) { return a.is_string() && one(a.as_string()); });
  }
  return affix.is_string() && one(affix.as_string());
}

std::string title_case(std::string_view s, bool only_first) {
  std::string out;
  bool start = true;
  for (char32_t c : code_points(s)) {
    bool alpha = utf8proc_category(static_cast<utf8proc_int32_t>(c)) <= UTF8PROC_CATEGORY_LO &&
                 utf8proc_category(static_cast<utf8proc_int32_t>(c)) >= UTF8PROC_CATEGORY_LU;
    auto m = start ? utf8proc_toupper(static_cast<utf8proc_int32_t>(c))
                   : utf8proc_tolower(static_cast<utf8proc_int32_t>(c));
    text::append_utf8(out, static_cast<char32_t>(m));
    start = only_first ? false : !alpha;
  }
  return out;
}

int64_t length(const Value& v, const Raise& raise) {
  if (v.is_string()) return static_cast<int64_t>(code_points(v.as_string()).size());
  if (v.is_array()) return static_cast<int64_t>(v.array().size());
  if (v.is_object()) return static_cast<int64_t>(v.object().entries.size());
  if (v.is_undefined()) return 0;
  raise_now(raise, str("object of type '", v.type_name(), "' has no len()"));
}

}  // namespace

std::vector<Value> iterate(const Value& v) {
  if (v.is_array()) return v.array();
  std::vector<Value> out;
  if (v.is_object()) {
    for (const auto& [k, x] : v.object().entries) out.emplace_back(k);
  } else if (v.is_string()) {
    for (char32_t c : code_points(v.as_string())) {
      std::string s;
      text::append_utf8(s, c);
      out.emplace_back(std::move(s));
    }
  }
  return out;
}

bool is_dict_method(std::string_view name) {
  return name == "items" || name == "keys" || name == "values" || name == "get";
}

Value binary_op(std::string_view op, const Value& a, const Value& b, const Raise& raise) {
  auto numeric = [](const Value& v) { return v.is_number() || v.is_bool(); };
  if (op == "~") return a.str() + b.str();
  if (op == "==") return a == b;
  if (op == "!=") return !(a == b);
  if (op == "in" || op == "not in") {
    bool found = false;
    if (b.is_string() && a.is_string()) {
      found = b.as_string().find(a.as_string()) != std::string::npos;
    } else if (b.is_array()) {
      found = std::find(b.array().begin(), b.array().end(), a) != b.array().end();
    } else if (b.is_object()) {
      found = a.is_string() && b.object().find(a.as_string()) != nullptr;
    } else if (!b.is_undefined()) {
      raise_now(raise, str("argument of type '", b.type_name(), "' is not iterable"));
    }
    return op == "in" ? found : !found;
  }
  if (op == "<" || op == ">" || op == "<=" || op == ">=") {
    int cmp;
    if (numeric(a) && numeric(b)) {
      cmp = a.as_number() < b.as_number() ? -1 : a.as_number() > b.as_number() ? 1 : 0;
    } else if (a.is_string() && b.is_string()) {
      cmp = a.as_string().compare(b.as_string());
    } else {
      raise_now(raise,
                str("'", op, "' not supported between '", a.type_name(), "' and '", b.type_name(), "'"));
    }
    return op == "<" ? cmp < 0 : op == ">" ? cmp > 0 : op == "<=" ? cmp <= 0 : cmp >= 0;
  }
  if (op == "+") {
    if (a.is_string() && b.is_string()) return a.as_string() + b.as_string();
    if (a.is_array() && b.is_array()) {
      Array out = a.array();
      out.insert(out.end(), b.array().begin(), b.array().end());
      return out;
    }
  }
  if (op == "*" && (a.is_string() || a.is_array()) && b.is_int()) {
    if (a.is_string()) {
      std::string out;
      for (int64_t i = 0; i < b.as_int(); ++i) out += a.as_string();
      return out;
    }
    Array out;
    for (int64_t i = 0; i < b.as_int(); ++i) out.insert(out.end(), a.array().begin(), a.array().end());
    return out;
  }
  if (!numeric(a) || !numeric(b)) {
    raise_now(raise, str("unsupported operand type(s) for ", op, ": '", a.type_name(), "' and '",
                         b.type_name(), "'"));
  }
  bool ints = !a.is_float() && !b.is_float();
  double x = a.as_number(), y = b.as_number();
  if ((op == "/" || op == "//" || op == "%") && y == 0) raise_now(raise, "division by zero");
  if (op == "+") return ints ? Value(static_cast<int64_t>(x + y)) : Value(x + y);
  if (op == "-") return ints ? Value(static_cast<int64_t>(x - y)) : Value(x - y);
  if (op == "*") return ints ? Value(static_cast<int64_t>(x * y)) : Value(x * y);
  if (op == "/") return x / y;
  if (op == "//") return ints ? Value(static_cast<int64_t>(std::floor(x / y))) : Value(std::floor(x / y));
  if (op == "%") {
    double m = x - y * std::floor(x / y);
    return ints ? Value(static_cast<int64_t>(m)) : Value(m);
  }
  if (op == "**") return ints && y >= 0 ? Value(static_cast<int64_t>(std::pow(x, y))) : Value(std::pow(x, y));
  raise_now(raise, str("unknown operator '", op, "'"));
}

Value apply_filter(std::string_view name, std::vector<Value>& args, Kwargs& kwargs, const Raise& raise) {
  const Value& v = args[0];
  auto need_string = [&]() -> const std::string& {
    if (!v.is_string()) raise_now(raise, str("filter '", name, "' expects a string, got ", v.type_name()));
    return v.as_string();
  };
  if (name == "safe") return v;
  if (name == "string") return v.str();
  if (name == "trim") return py_strip(v.str(), arg(args, 1, kwargs, "chars"), true, true);
  if (name == "length" || name == "count") return length(v, raise);
  if (name == "lower") return map_case(v.str(), false);
  if (name == "upper") return map_case(v.str(), true);
  if (name == "capitalize") return title_case(map_case(v.str(), false), true);
  if (name == "title") return title_case(v.str(), false);
  if (name == "tojson") {
    const Value* indent = arg(args, 1, kwargs, "indent");
    return v.to_json(indent && indent->is_int() ? std::optional<int>(static_cast<int>(indent->as_int()))
                                                : std::nullopt);
  }
  if (name == "items") {
    if (v.is_undefined()) return Array{};
    if (!v.is_object()) raise_now(raise, str("filter 'items' expects a mapping, got ", v.type_name()));
    Array out;
    for (const auto& [k, x] : v.object().entries) out.push_back(Array{Value(k), x});
    return out;
  }
  if (name == "default" || name == "d") {
    const Value* fallback = arg(args, 1, kwargs, "default_value");
    const Value* boolean = arg(args, 2, kwargs, "boolean");
    bool use = v.is_undefined() || (boolean && boolean->truthy() && !v.truthy());
    return use ? (fallback ? *fallback : Value(std::string())) : v;
  }
  if (name == "join") {
    const Value* sep = arg(args, 1, kwargs, "d");
    const Value* attribute = kwarg(kwargs, "attribute");
    std::string out;
    bool first = true;
    for (const auto& item : iterate(v)) {
      if (!first && sep) out += sep->str();
      first = false;
      out += attribute && item.is_object() && item.object().find(attribute->str())
                 ? item.object().find(attribute->str())->str()
                 : item.str();
    }
    return out;
  }
  if (name == "first" || name == "last") {
    std::vector<Value> items = iterate(v);
    if (items.empty()) return Undefined{"first"};
    return name == "first" ? items.front() : items.back();
  }
  if (name == "list") return Array(iterate(v));
  if (name == "reverse") {
    std::vector<Value> items = iterate(v);
    std::reverse(items.begin(), items.end());
    if (!v.is_string()) return Array(items);
    std::string s;
    for (const auto& c : items) s += c.as_string();
    return s;
  }
  if (name == "replace") {
    const Value* from = arg(args, 1, kwargs, "old");
    const Value* to = arg(args, 2, kwargs, "new");
    const Value* count = arg(args, 3, kwargs, "count");
    if (!from || !to) raise_now(raise, "filter 'replace' needs two arguments");
    return py_replace(need_string(), from->str(), to->str(), count && count->is_int() ? count->as_int() : -1);
  }
  if (name == "int") {
    if (v.is_number() || v.is_bool()) return static_cast<int64_t>(v.as_number());
    try {
      return static_cast<int64_t>(std::stoll(v.str()));
    } catch (const std::exception&) {
      return args.size() > 1 ? args[1] : Value(static_cast<int64_t>(0));
    }
  }
  if (name == "float") {
    if (v.is_number() || v.is_bool()) return v.as_number();
    try {
      return std::stod(v.str());
    } catch (const std::exception&) {
      return args.size() > 1 ? args[1] : Value(0.0);
    }
  }
  if (name == "abs") {
    if (v.is_int()) return v.as_int() < 0 ? -v.as_int() : v.as_int();
    return std::fabs(v.as_number());
  }
  if (name == "map") {
    const Value* attribute = kwarg(kwargs, "attribute");
    if (!attribute) raise_now(raise, "filter 'map' is supported with attribute= only");
    Array out;
    for (const auto& item : iterate(v)) {
      const Value* x = item.is_object() ? item.object().find(attribute->str()) : nullptr;
      out.push_back(x ? *x : Value(Undefined{attribute->str()}));
    }
    return out;
  }
  raise_now(raise, str("unknown filter '", name, "'"));
}

bool apply_test(std::string_view name, std::vector<Value>& args, const Raise& raise) {
  const Value& v = args[0];
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "number") return v.is_number();
  if (name == "integer") return v.is_int();
  if (name == "float") return v.is_float();
  if (name == "boolean") return v.is_bool();
  if (name == "true") return v.is_bool() && v.as_bool();
  if (name == "false") return v.is_bool() && !v.as_bool();
  if (name == "mapping") return v.is_object();
  if (name == "iterable") return v.is_array() || v.is_object() || v.is_string();
  if (name == "sequence") return v.is_array() || v.is_object() || v.is_string();
  if (name == "callable") return v.is_callable();
  if (name == "lower") return v.is_string() && map_case(v.as_string(), false) == v.as_string();
  if (name == "upper") return v.is_string() && map_case(v.as_string(), true) == v.as_string();
  if (name == "even" || name == "odd") {
    if (!v.is_int()) raise_now(raise, str("test '", name, "' expects an integer"));
    return (v.as_int() % 2 == 0) == (name == "even");
  }
  if (args.size() < 2 &&
      (name == "eq" || name == "equalto" || name == "ne" || name == "in" || name == "sameas")) {
    raise_now(raise, str("test '", name, "' needs an argument"));
  }
  if (name == "eq" || name == "equalto" || name == "sameas") return v == args[1];
  if (name == "ne") return !(v == args[1]);
  if (name == "in") return binary_op("in", v, args[1], raise).as_bool();
  raise_now(raise, str("unknown test '", name, "'"));
}

Value call_global(std::string_view name, std::vector<Value>& args, Kwargs& kwargs, const Raise& raise) {
  if (name == "raise_exception")
    raise_now(raise, str("raise_exception: ", args.empty() ? "" : args[0].str()));
  if (name == "namespace" || name == "dict") {
    Object o;
    o.is_namespace = name == "namespace";
    for (auto& [k, v] : kwargs) o.set(k, v);
    return o;
  }
  if (name == "range") {
    std::vector<int64_t> n;
    for (const auto& a : args) {
      if (!a.is_int()) raise_now(raise, "range() takes integers");
      n.push_back(a.as_int());
    }
    if (n.empty() || n.size() > 3) raise_now(raise, "range() takes 1 to 3 arguments");
    int64_t start = n.size() > 1 ? n[0] : 0, stop = n.size() > 1 ? n[1] : n[0],
            step = n.size() > 2 ? n[2] : 1;
    if (step == 0) raise_now(raise, "range() step must not be zero");
    Array out;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.emplace_back(i);
    return out;
  }
  if (name == "strftime_now") {
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    char buf[256];
    size_t n = std::strftime(buf, sizeof buf, args.empty() ? "%Y-%m-%d" : args[0].str().c_str(), &tm);
    return std::string(buf, n);
  }
  raise_now(raise, str("'", name, "' is undefined"));
}

Value call_method(const Value& self, std::string_view method, std::vector<Value>& args, Kwargs& kwargs,
                  const Raise& raise) {
  if (self.is_string()) {
    const std::string& s = self.as_string();
    if (method == "startswith" || method == "endswith") {
      if (args.empty()) raise_now(raise, str(method, "() takes an argument"));
      return affix_match(self, args[0], method == "startswith");
    }
    if (method == "strip") return py_strip(s, arg(args, 0, kwargs, "chars"), true, true);
    if (method == "lstrip") return py_strip(s, arg(args, 0, kwargs, "chars"), true, false);
    if (method == "rstrip") return py_strip(s, arg(args, 0, kwargs, "chars"), false, true);
    if (method == "split") {
      const Value* maxsplit = arg(args, 1, kwargs, "maxsplit");
      return py_split(s, arg(args, 0, kwargs, "sep"),
                      maxsplit && maxsplit->is_int() ? maxsplit->as_int() : -1);
    }
    if (method == "replace") {
      if (args.size() < 2) raise_now(raise, "replace() takes two arguments");
      return py_replace(s, args[0].str(), args[1].str(),
                        args.size() > 2 && args[2].is_int() ? args[2].as_int() : -1);
    }
    if (method == "upper") return map_case(s, true);
    if (method == "lower") return map_case(s, false);
    if (method == "title") return title_case(s, false);
    if (method == "capitalize") return title_case(map_case(s, false), true);
    if (method == "find") {
      if (args.empty()) raise_now(raise, "find() takes an argument");
      size_t hit = s.find(args[0].str());
      return hit == std::string::npos ? int64_t{-1}
                                      : static_cast<int64_t>(code_points(s.substr(0, hit)).size());
    }
    if (method == "join") {
      std::string out;
      bool first = true;
      for (const auto& item : iterate(args.empty() ? Value() : args[0])) {
        if (!first) out += s;
        first = false;
        out += item.str();
      }
      return out;
    }
  } else if (self.is_object()) {
    const Object& o = self.object();
    if (method == "items") {
      Array out;
      for (const auto& [k, v] : o.entries) out.push_back(Array{Value(k), v});
      return out;
    }
    if (method == "keys") return Array(iterate(self));
    if (method == "values") {
      Array out;
      for (const auto& [k, v] : o.entries) out.push_back(v);
      return out;
    }
    if (method == "get") {
      if (args.empty()) raise_now(raise, "get() takes a key");
      const Value* v = o.find(args[0].str());
      return v ? *v : (args.size() > 1 ? args[1] : Value(nullptr));
    }
  } else if (self.is_array() && method == "append") {
    if (args.empty()) raise_now(raise, "append() takes an argument");
    self.array().push_back(args[0]);
    return nullptr;
  }
  raise_now(raise, str("'", self.type_name(), "' object has no method '", method, "'"));
}

}  // namespace mtplx::jinja
