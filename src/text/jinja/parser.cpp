#include "text/jinja/parser.h"

#include <initializer_list>

#include "base/error.h"
#include "text/jinja/lexer.h"

namespace mtplx::jinja {

namespace {

class Parser {
 public:
  Parser(std::vector<Token> tokens, std::string_view name) : tokens_(std::move(tokens)), name_(name) {}

  Body run() {
    Body body = parse_body({});
    if (peek().kind != TokenKind::kEnd) error(str("unexpected '", end_keyword_, "' tag"));
    return body;
  }

 private:
  const Token& peek(size_t ahead = 0) const { return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)]; }
  const Token& next() { return tokens_[pos_ < tokens_.size() - 1 ? pos_++ : pos_]; }
  [[noreturn]] void error(std::string_view what) const {
    fail(str("template syntax error: ", what), str(name_, " line ", peek().line));
  }
  bool at_op(std::string_view op) const { return peek().kind == TokenKind::kOp && peek().text == op; }
  bool at_name(std::string_view n) const { return peek().kind == TokenKind::kName && peek().text == n; }
  bool accept_op(std::string_view op) {
    if (!at_op(op)) return false;
    ++pos_;
    return true;
  }
  bool accept_name(std::string_view n) {
    if (!at_name(n)) return false;
    ++pos_;
    return true;
  }
  void expect_op(std::string_view op) {
    if (!accept_op(op)) error(str("expected '", op, "' but found '", peek().text, "'"));
  }
  void expect(TokenKind kind, std::string_view what) {
    if (peek().kind != kind) error(str("expected ", what, " but found '", peek().text, "'"));
    ++pos_;
  }
  std::string expect_name() {
    if (peek().kind != TokenKind::kName) error(str("expected a name but found '", peek().text, "'"));
    return next().text;
  }

  // Parses statements until a block tag whose keyword is in `stops` (left unconsumed: pos_ at the keyword).
  Body parse_body(std::initializer_list<std::string_view> stops) {
    Body body;
    while (peek().kind != TokenKind::kEnd) {
      const Token& t = peek();
      if (t.kind == TokenKind::kText) {
        auto s = new_stmt(Stmt::Kind::kText, t.line);
        s->text = next().text;
        body.push_back(std::move(s));
      } else if (t.kind == TokenKind::kVarStart) {
        next();
        auto s = new_stmt(Stmt::Kind::kOutput, t.line);
        s->expr = expression();
        expect(TokenKind::kVarEnd, "'}}'");
        body.push_back(std::move(s));
      } else if (t.kind == TokenKind::kBlockStart) {
        const Token& keyword = peek(1);
        for (auto stop : stops) {
          if (keyword.kind == TokenKind::kName && keyword.text == stop) {
            next();
            return body;
          }
        }
        if (keyword.kind == TokenKind::kName && keyword.text.rfind("end", 0) == 0 &&
            keyword.text != "endgeneration") {
          end_keyword_ = keyword.text;
          if (stops.size() == 0) {
            next();
            error(str("unexpected '", keyword.text, "'"));
          }
          next();
          error(str("unexpected '", keyword.text, "', expected one of the tags closing the open block"));
        }
        next();
        if (auto s = statement()) body.push_back(std::move(s));
      } else {
        error(str("unexpected '", t.text, "'"));
      }
    }
    if (stops.size() != 0) error(str("unexpected end of template; missing '", *stops.begin(), "'"));
    return body;
  }

  void end_tag(std::string_view keyword) {
    if (!accept_name(keyword)) error(str("expected '", keyword, "'"));
    expect(TokenKind::kBlockEnd, "'%}'");
  }

  StmtPtr statement() {
    int line = peek().line;
    std::string keyword = expect_name();
    if (keyword == "if") return if_statement(line);
    if (keyword == "for") return for_statement(line);
    if (keyword == "set") return set_statement(line);
    if (keyword == "macro") return macro_statement(line);
    if (keyword == "call") return call_statement(line);
    if (keyword == "break" || keyword == "continue") {
      expect(TokenKind::kBlockEnd, "'%}'");
      return new_stmt(keyword == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue, line);
    }
    if (keyword == "generation" || keyword == "endgeneration") {  // transformers' assistant-mask markers
      expect(TokenKind::kBlockEnd, "'%}'");
      return nullptr;
    }
    pos_ -= 1;
    error(str("unknown tag '", keyword, "'"));
  }

  StmtPtr if_statement(int line) {
    auto s = new_stmt(Stmt::Kind::kIf, line);
    ExprPtr cond = expression();
    expect(TokenKind::kBlockEnd, "'%}'");
    while (true) {
      Body body = parse_body({"elif", "else", "endif"});
      s->branches.emplace_back(std::move(cond), std::move(body));
      std::string kw = next().text;
      if (kw == "elif") {
        cond = expression();
        expect(TokenKind::kBlockEnd, "'%}'");
        continue;
      }
      expect(TokenKind::kBlockEnd, "'%}'");
      if (kw == "else") {
        s->else_body = parse_body({"endif"});
        end_tag("endif");
      }
      return s;
    }
  }

  StmtPtr for_statement(int line) {
    auto s = new_stmt(Stmt::Kind::kFor, line);
    do {
      s->names.push_back(expect_name());
    } while (accept_op(","));
    if (!accept_name("in")) error("expected 'in' in for loop");
    s->expr = or_expr();  // no conditional here: "if" starts the loop filter
    if (accept_name("if")) s->filter = expression();
    accept_name("recursive");
    expect(TokenKind::kBlockEnd, "'%}'");
    s->body = parse_body({"else", "endfor"});
    if (tokens_[pos_ - 1].kind == TokenKind::kBlockStart && peek().text == "else") {
      next();
      expect(TokenKind::kBlockEnd, "'%}'");
      s->else_body = parse_body({"endfor"});
    }
    end_tag("endfor");
    return s;
  }

  StmtPtr set_statement(int line) {
    auto s = new_stmt(Stmt::Kind::kSet, line);
    std::string first = expect_name();
    if (accept_op(".")) {
      auto target = new_expr(Expr::Kind::kAttr, line);
      auto base = new_expr(Expr::Kind::kName, line);
      base->name = first;
      target->args.push_back(std::move(base));
      target->name = expect_name();
      s->target = std::move(target);
    } else {
      s->names.push_back(first);
      while (accept_op(",")) s->names.push_back(expect_name());
    }
    if (peek().kind == TokenKind::kBlockEnd && !s->target && s->names.size() == 1) {
      next();
      s->kind = Stmt::Kind::kSetBlock;
      s->body = parse_body({"endset"});
      end_tag("endset");
      return s;
    }
    expect_op("=");
    s->expr = tuple_or_expression();
    expect(TokenKind::kBlockEnd, "'%}'");
    return s;
  }

  StmtPtr macro_statement(int line) {
    auto s = new_stmt(Stmt::Kind::kMacro, line);
    s->text = expect_name();
    expect_op("(");
    while (!accept_op(")")) {
      s->names.push_back(expect_name());
      s->defaults.push_back(accept_op("=") ? expression() : nullptr);
      if (!at_op(")")) expect_op(",");
    }
    expect(TokenKind::kBlockEnd, "'%}'");
    s->body = parse_body({"endmacro"});
    end_tag("endmacro");
    return s;
  }

  StmtPtr call_statement(int line) {
    auto s = new_stmt(Stmt::Kind::kCallBlock, line);
    s->expr = expression();
    expect(TokenKind::kBlockEnd, "'%}'");
    s->body = parse_body({"endcall"});
    end_tag("endcall");
    return s;
  }

  ExprPtr make(Expr::Kind kind, int line) { return new_expr(kind, line); }

  ExprPtr tuple_or_expression() {
    int line = peek().line;
    ExprPtr first = expression();
    if (!at_op(",")) return first;
    auto tuple = make(Expr::Kind::kTuple, line);
    tuple->args.push_back(std::move(first));
    while (accept_op(",")) tuple->args.push_back(expression());
    return tuple;
  }

  ExprPtr expression() {
    int line = peek().line;
    ExprPtr value = or_expr();
    if (!at_name("if")) return value;
    next();
    auto cond = make(Expr::Kind::kConditional, line);
    cond->args.push_back(or_expr());
    cond->args.push_back(std::move(value));
    cond->args.push_back(accept_name("else") ? expression() : nullptr);
    return cond;
  }

  ExprPtr binary(std::string op, ExprPtr left, ExprPtr right, int line) {
    auto e = make(Expr::Kind::kBinary, line);
    e->name = std::move(op);
    e->args.push_back(std::move(left));
    e->args.push_back(std::move(right));
    return e;
  }

  ExprPtr or_expr() {
    ExprPtr left = and_expr();
    while (at_name("or")) {
      int line = next().line;
      left = binary("or", std::move(left), and_expr(), line);
    }
    return left;
  }

  ExprPtr and_expr() {
    ExprPtr left = not_expr();
    while (at_name("and")) {
      int line = next().line;
      left = binary("and", std::move(left), not_expr(), line);
    }
    return left;
  }

  ExprPtr not_expr() {
    if (at_name("not")) {
      auto e = make(Expr::Kind::kUnary, next().line);
      e->name = "not";
      e->args.push_back(not_expr());
      return e;
    }
    return compare();
  }

  ExprPtr compare() {
    ExprPtr left = math1();
    while (true) {
      int line = peek().line;
      std::string op;
      for (auto candidate : {"==", "!=", "<", ">", "<=", ">="}) {
        if (at_op(candidate)) op = candidate;
      }
      if (!op.empty()) {
        next();
      } else if (at_name("in")) {
        next();
        op = "in";
      } else if (at_name("not") && peek(1).kind == TokenKind::kName && peek(1).text == "in") {
        pos_ += 2;
        op = "not in";
      } else {
        return left;
      }
      left = binary(op, std::move(left), math1(), line);
    }
  }

  ExprPtr math1() {
    ExprPtr left = concat();
    while (at_op("+") || at_op("-")) {
      const Token& t = next();
      left = binary(t.text, std::move(left), concat(), t.line);
    }
    return left;
  }

  ExprPtr concat() {
    ExprPtr left = math2();
    while (at_op("~")) {
      int line = next().line;
      left = binary("~", std::move(left), math2(), line);
    }
    return left;
  }

  ExprPtr math2() {
    ExprPtr left = power();
    while (at_op("*") || at_op("/") || at_op("//") || at_op("%")) {
      const Token& t = next();
      left = binary(t.text, std::move(left), power(), t.line);
    }
    return left;
  }

  ExprPtr power() {
    ExprPtr left = unary();
    while (at_op("**")) {
      int line = next().line;
      left = binary("**", std::move(left), unary(), line);
    }
    return left;
  }

  ExprPtr unary() {
    if (at_op("-") || at_op("+")) {
      const Token& t = next();
      auto e = make(Expr::Kind::kUnary, t.line);
      e->name = t.text;
      e->args.push_back(unary());
      return e;
    }
    return filters_and_tests(postfix(primary()));
  }

  void call_arguments(Expr& e) {
    while (!accept_op(")")) {
      if (peek().kind == TokenKind::kName && peek(1).kind == TokenKind::kOp && peek(1).text == "=") {
        std::string key = next().text;
        next();
        e.kwargs.emplace_back(key, expression());
      } else {
        e.args.push_back(expression());
      }
      if (!at_op(")")) expect_op(",");
    }
  }

  ExprPtr postfix(ExprPtr e) {
    while (true) {
      int line = peek().line;
      if (accept_op(".")) {
        auto a = make(Expr::Kind::kAttr, line);
        a->args.push_back(std::move(e));
        a->name = peek().kind == TokenKind::kInt ? next().text : expect_name();
        e = std::move(a);
      } else if (accept_op("[")) {
        e = subscript(std::move(e), line);
      } else if (accept_op("(")) {
        auto c = make(Expr::Kind::kCall, line);
        c->args.push_back(std::move(e));
        call_arguments(*c);
        e = std::move(c);
      } else {
        return e;
      }
    }
  }

  ExprPtr subscript(ExprPtr base, int line) {
    ExprPtr parts[3];
    int part = 0;
    bool slice = false;
    while (!accept_op("]")) {
      if (accept_op(":")) {
        slice = true;
        if (++part > 2) error("too many ':' in slice");
        continue;
      }
      parts[part] = expression();
    }
    auto e = make(slice ? Expr::Kind::kSlice : Expr::Kind::kIndex, line);
    e->args.push_back(std::move(base));
    if (!slice && !parts[0]) error("empty subscript");
    for (int i = 0; i < (slice ? 3 : 1); ++i) e->args.push_back(std::move(parts[i]));
    return e;
  }

  ExprPtr filters_and_tests(ExprPtr e) {
    while (true) {
      int line = peek().line;
      if (accept_op("|")) {
        auto f = make(Expr::Kind::kFilter, line);
        f->name = expect_name();
        f->args.push_back(std::move(e));
        if (accept_op("(")) call_arguments(*f);
        e = std::move(f);
      } else if (at_name("is")) {
        next();
        auto t = make(Expr::Kind::kTest, line);
        t->negated = accept_name("not");
        t->name = expect_name();
        t->args.push_back(std::move(e));
        if (accept_op("(")) {
          call_arguments(*t);
        } else if (peek().kind == TokenKind::kString || peek().kind == TokenKind::kInt ||
                   peek().kind == TokenKind::kFloat || at_name("none") || at_name("true") ||
                   at_name("false")) {
          t->args.push_back(primary());
        }
        e = std::move(t);
      } else {
        return e;
      }
    }
  }

  ExprPtr primary() {
    const Token& t = next();
    auto literal = [&](Value v) {
      auto e = make(Expr::Kind::kLiteral, t.line);
      e->value = std::move(v);
      return e;
    };
    switch (t.kind) {
      case TokenKind::kString: {
        std::string s = t.text;
        while (peek().kind == TokenKind::kString) s += next().text;  // adjacent literals concatenate
        return literal(s);
      }
      case TokenKind::kInt:
        return literal(static_cast<int64_t>(std::stoll(t.text)));
      case TokenKind::kFloat:
        return literal(std::stod(t.text));
      case TokenKind::kName: {
        if (t.text == "true" || t.text == "True") return literal(true);
        if (t.text == "false" || t.text == "False") return literal(false);
        if (t.text == "none" || t.text == "None") return literal(nullptr);
        auto e = make(Expr::Kind::kName, t.line);
        e->name = t.text;
        return e;
      }
      case TokenKind::kOp:
        if (t.text == "(") return parenthesized(t.line);
        if (t.text == "[") {
          auto e = make(Expr::Kind::kList, t.line);
          while (!accept_op("]")) {
            e->args.push_back(expression());
            if (!at_op("]")) expect_op(",");
          }
          return e;
        }
        if (t.text == "{") {
          auto e = make(Expr::Kind::kDict, t.line);
          while (!accept_op("}")) {
            ExprPtr key = expression();
            expect_op(":");
            e->pairs.emplace_back(std::move(key), expression());
            if (!at_op("}")) expect_op(",");
          }
          return e;
        }
        break;
      default:
        break;
    }
    pos_ -= 1;
    error(str("unexpected '", t.text.empty() ? "end of tag" : t.text, "' in expression"));
  }

  ExprPtr parenthesized(int line) {
    if (accept_op(")")) return make(Expr::Kind::kTuple, line);
    ExprPtr first = expression();
    if (accept_op(")")) return first;
    auto tuple = make(Expr::Kind::kTuple, line);
    tuple->args.push_back(std::move(first));
    while (accept_op(",")) {
      if (at_op(")")) break;
      tuple->args.push_back(expression());
    }
    expect_op(")");
    return tuple;
  }

  std::vector<Token> tokens_;
  std::string_view name_;
  size_t pos_ = 0;
  std::string end_keyword_;
};

}  // namespace

Body parse(std::string_view source, std::string_view name) {
  return Parser(tokenize(source, name), name).run();
}

}  // namespace mtplx::jinja
