#include "text/jinja/value.h"

#include <charconv>
#include <cmath>
#include <cstdio>

#include "base/error.h"

namespace mtplx::jinja {

const Value* Object::find(std::string_view key) const {
  for (const auto& [k, v] : entries) {
    if (k == key) return &v;
  }
  return nullptr;
}

void Object::set(std::string_view key, Value value) {
  for (auto& [k, v] : entries) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  entries.emplace_back(std::string(key), std::move(value));
}

Value Value::from_json(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return nullptr;
    case nlohmann::ordered_json::value_t::boolean:
      return j.get<bool>();
    case nlohmann::ordered_json::value_t::number_integer:
      return j.get<int64_t>();
    case nlohmann::ordered_json::value_t::number_unsigned:
      return static_cast<int64_t>(j.get<uint64_t>());
    case nlohmann::ordered_json::value_t::number_float:
      return j.get<double>();
    case nlohmann::ordered_json::value_t::string:
      return j.get<std::string>();
    case nlohmann::ordered_json::value_t::array: {
      Array a;
      a.reserve(j.size());
      for (const auto& e : j) a.push_back(from_json(e));
      return a;
    }
    case nlohmann::ordered_json::value_t::object: {
      Object o;
      for (const auto& [k, v] : j.items()) o.entries.emplace_back(k, from_json(v));
      return o;
    }
    default:
      return Undefined{};
  }
}

bool Value::truthy() const {
  if (is_undefined() || is_none()) return false;
  if (is_bool()) return as_bool();
  if (is_int()) return as_int() != 0;
  if (is_float()) return std::get<double>(v_) != 0.0;
  if (is_string()) return !as_string().empty();
  if (is_array()) return !array().empty();
  if (is_object()) return !object().entries.empty();
  return true;
}

std::string python_float(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);  // e.g. "-1.2345e-05"
  auto e = sci.find('e');
  int exponent = std::stoi(sci.substr(e + 1));
  std::string mantissa = sci.substr(0, e);
  bool negative = mantissa[0] == '-';
  if (negative) mantissa.erase(0, 1);
  std::string digits;
  for (char c : mantissa) {
    if (c != '.') digits += c;
  }
  std::string out = negative ? "-" : "";
  if (exponent >= -5 + 1 && exponent < 16) {  // Python repr switches to exponent form outside [1e-4, 1e16)
    if (exponent < 0) {
      out += "0.";
      out.append(static_cast<size_t>(-exponent - 1), '0');
      out += digits;
    } else if (static_cast<size_t>(exponent) + 1 >= digits.size()) {
      out += digits;
      out.append(static_cast<size_t>(exponent) + 1 - digits.size(), '0');
      out += ".0";
    } else {
      out += digits.substr(0, static_cast<size_t>(exponent) + 1);
      out += '.';
      out += digits.substr(static_cast<size_t>(exponent) + 1);
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) {
    out += '.';
    out += digits.substr(1);
  }
  char exp[16];
  std::snprintf(exp, sizeof exp, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
  return out + exp;
}

namespace {

void json_string(std::string& out, std::string_view s) {
  out += '"';
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

std::string python_repr_string(std::string_view s) {
  // Python prefers single quotes unless the string contains one and no double quote.
  bool single = s.find('\'') != std::string_view::npos && s.find('"') == std::string_view::npos;
  char q = single ? '"' : '\'';
  std::string out(1, q);
  for (char c : s) {
    if (c == q || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(static_cast<unsigned char>(c)));
      out += buf;
    } else {
      out += c;
    }
  }
  return out + q;
}

void dump_json(const Value& v, std::string& out, std::optional<int> indent, int depth) {
  auto newline = [&](int d) {
    out += '\n';
    out.append(static_cast<size_t>(*indent * d), ' ');
  };
  const char* item_sep = indent ? "," : ", ";
  if (v.is_undefined() || v.is_none()) {
    out += "null";
  } else if (v.is_bool()) {
    out += v.as_bool() ? "true" : "false";
  } else if (v.is_int()) {
    out += std::to_string(v.as_int());
  } else if (v.is_float()) {
    double d = v.as_number();
    out += std::isnan(d) ? "NaN" : std::isinf(d) ? (d > 0 ? "Infinity" : "-Infinity") : python_float(d);
  } else if (v.is_string()) {
    json_string(out, v.as_string());
  } else if (v.is_array()) {
    if (v.array().empty()) {
      out += "[]";
      return;
    }
    out += '[';
    for (size_t i = 0; i < v.array().size(); ++i) {
      if (i) out += item_sep;
      if (indent) newline(depth + 1);
      dump_json(v.array()[i], out, indent, depth + 1);
    }
    if (indent) newline(depth);
    out += ']';
  } else if (v.is_object()) {
    if (v.object().entries.empty()) {
      out += "{}";
      return;
    }
    out += '{';
    bool first = true;
    for (const auto& [k, e] : v.object().entries) {
      if (!first) out += item_sep;
      first = false;
      if (indent) newline(depth + 1);
      json_string(out, k);
      out += ": ";
      dump_json(e, out, indent, depth + 1);
    }
    if (indent) newline(depth);
    out += '}';
  } else {
    fail("cannot convert a function to JSON", "chat template tojson");
  }
}

}  // namespace

std::string Value::str() const {
  if (is_undefined()) return "";
  if (is_string()) return as_string();
  return repr();
}

std::string Value::repr() const {
  if (is_undefined()) return "";
  if (is_none()) return "None";
  if (is_bool()) return as_bool() ? "True" : "False";
  if (is_int()) return std::to_string(as_int());
  if (is_float()) return python_float(as_number());
  if (is_string()) return python_repr_string(as_string());
  if (is_array()) {
    std::string out = "[";
    for (size_t i = 0; i < array().size(); ++i) {
      if (i) out += ", ";
      out += array()[i].repr();
    }
    return out + "]";
  }
  if (is_object()) {
    std::string out = "{";
    bool first = true;
    for (const auto& [k, v] : object().entries) {
      if (!first) out += ", ";
      out += python_repr_string(k);
      out += ": ";
      out += v.repr();
      first = false;
    }
    return out + "}";
  }
  return "<function>";
}

std::string Value::to_json(std::optional<int> indent) const {
  std::string out;
  dump_json(*this, out, indent, 0);
  return out;
}

std::string Value::type_name() const {
  static constexpr const char* kNames[] = {"undefined", "none", "bool", "int",     "float",
                                           "str",       "list", "dict", "function"};
  return kNames[v_.index()];
}

bool operator==(const Value& a, const Value& b) {
  if ((a.is_number() || a.is_bool()) && (b.is_number() || b.is_bool())) return a.as_number() == b.as_number();
  if (a.v_.index() != b.v_.index()) return false;
  if (a.is_string()) return a.as_string() == b.as_string();
  if (a.is_none() || a.is_undefined()) return true;
  if (a.is_array()) return a.array() == b.array();
  if (a.is_object()) {
    const auto& x = a.object().entries;
    const auto& y = b.object().entries;
    if (x.size() != y.size()) return false;
    for (const auto& [k, v] : x) {
      const Value* other = b.object().find(k);
      if (!other || !(*other == v)) return false;
    }
    return true;
  }
  return &a.function() == &b.function();
}

}  // namespace mtplx::jinja
