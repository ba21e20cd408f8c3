// Syntax tree of a parsed Jinja template. Nodes keep their template line for error messages.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "text/jinja/value.h"

namespace mtplx::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,      // value
    kName,         // name
    kList,         // args
    kTuple,        // args
    kDict,         // kwargs-like pairs in `pairs`
    kAttr,         // args[0].name
    kIndex,        // args[0][args[1]]
    kSlice,        // args[0][args[1]:args[2]:args[3]] (null entries for omitted parts)
    kCall,         // args[0](args[1..], kwargs)
    kFilter,       // args[0] | name(args[1..], kwargs)
    kTest,         // args[0] is [not] name(args[1..])
    kUnary,        // name in {"not", "-", "+"}; args[0]
    kBinary,       // name is the operator; args[0], args[1]
    kConditional,  // args[1] if args[0] else args[2] (args[2] may be null)
  };
  Kind kind = Kind::kLiteral;
  int line = 0;
  Value value;
  std::string name;
  bool negated = false;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::pair<ExprPtr, ExprPtr>> pairs;
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  enum class Kind {
    kText,       // text
    kOutput,     // {{ expr }}
    kIf,         // branches: (condition, body)...; else_body
    kFor,        // targets in expr [if filter]; body; else_body
    kSet,        // targets (or attr target expr) = expr
    kSetBlock,   // {% set name %}body{% endset %}
    kMacro,      // name(params with defaults) body
    kCallBlock,  // {% call expr %}body{% endcall %} (caller() renders body)
    kBreak,
    kContinue,
  };
  Kind kind = Kind::kText;
  int line = 0;
  std::string text;
  ExprPtr expr;
  ExprPtr filter;                  // for-loop "if" clause
  ExprPtr target;                  // set ns.attr = ... (an kAttr expression)
  std::vector<std::string> names;  // loop / set targets, macro parameter names
  std::vector<ExprPtr> defaults;   // macro parameter defaults (null when absent)
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body body;
  Body else_body;
};

inline ExprPtr new_expr(Expr::Kind kind, int line) {
  auto e = std::make_unique<Expr>();
  e->kind = kind;
  e->line = line;
  return e;
}

inline StmtPtr new_stmt(Stmt::Kind kind, int line) {
  auto s = std::make_unique<Stmt>();
  s->kind = kind;
  s->line = line;
  return s;
}

}  // namespace mtplx::jinja
