// Chat-template rendering parity with @huggingface/jinja on real Qwen templates, plus error reporting.
#include <gtest/gtest.h>

#include "base/error.h"
#include "text/conversations.h"
#include "text/jinja/template.h"
#include "text/oracle.h"

namespace mtplx::jinja {
namespace {

using nlohmann::ordered_json;

std::string template_source(std::string_view file) {
  return test::read_text(test::source_dir() / "tests" / "text" / "data" / "templates" / std::string(file));
}

Object variables(const ordered_json& j) {
  Value v = Value::from_json(j);
  return v.object();
}

// Renders every case with both implementations: same text, or both raise.
void expect_same_rendering(const std::string& source, const std::vector<ordered_json>& cases,
                           std::string_view name) {
  Template ours(source, std::string(name));
  // ordered_json keeps key order, which tojson must reproduce.
  ordered_json request = {{"template", source}, {"cases", cases}};
  nlohmann::json oracle = test::run_oracle("render.mjs", request.dump());
  ASSERT_EQ(oracle.size(), cases.size());
  int failures = 0;
  for (size_t i = 0; i < cases.size() && failures < 3; ++i) {
    std::string got, error;
    try {
      got = ours.render(variables(cases[i]));
    } catch (const Error& e) {
      error = e.what();
    }
    if (oracle[i].contains("error")) {
      if (error.empty()) {
        ++failures;
        ADD_FAILURE() << name << " case " << i << ": oracle raised '" << oracle[i]["error"].get<std::string>()
                      << "' but we rendered:\n"
                      << got << "\ninput: " << cases[i].dump();
      }
      continue;
    }
    std::string expected = oracle[i]["text"];
    if (!error.empty() || got != expected) {
      ++failures;
      ADD_FAILURE() << name << " case " << i << " differs\ninput: " << cases[i].dump() << "\nerror: " << error
                    << "\n--- expected ---\n"
                    << expected << "\n--- got ---\n"
                    << got;
    }
  }
}

TEST(TemplateOracle, Qwen35) {
  expect_same_rendering(template_source("qwen3.5.jinja"), test::conversation_corpus(11, 400, false),
                        "qwen3.5.jinja");
}

TEST(TemplateOracle, Qwen36PreserveThinking) {
  expect_same_rendering(template_source("qwen3.6.jinja"), test::conversation_corpus(12, 300, false),
                        "qwen3.6.jinja");
}

TEST(TemplateOracle, Qwen3) {
  expect_same_rendering(template_source("qwen3.jinja"), test::conversation_corpus(13, 300, true),
                        "qwen3.jinja");
}

TEST(TemplateOracle, Qwen25) {
  expect_same_rendering(template_source("qwen2.5.jinja"), test::conversation_corpus(14, 300, true),
                        "qwen2.5.jinja");
}

// Language features the real templates do not all exercise, each checked against the oracle.
TEST(TemplateOracle, LanguageFeatures) {
  std::vector<std::string> snippets = {
      "{% for x in items %}{{ loop.index }}/{{ loop.length }}:{{ x }}{% if not loop.last %}, {% endif %}{% "
      "endfor %}",
      "{% for x in items[::-1] %}{{ x }}{% endfor %}|{{ items[1:] | join('-') }}|{{ items[-1] }}|{{ "
      "word[::-1] }}",
      "{% for k, v in obj | items %}{{ k }}={{ v | tojson }};{% endfor %}",
      "{{ obj | tojson }}|{{ obj | tojson(indent=2) }}|{{ [1, 2.5, 'é', none, true] | tojson }}",
      "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ "
      "greet('B', '?') }} "
      "{{ greet(name='C') }}",
      "{% set ns = namespace(n=0) %}{% for i in items %}{% set ns.n = ns.n + i | length %}{% endfor %}{{ "
      "ns.n }}",
      "{{ 'a,b,,c'.split(',') | length }} {{ ' x '.strip() }}|{{ 'Hello'.upper() }}{{ 'Hello'.lower() }}"
      "{{ 'abc'.replace('b', 'B') }}{{ 'abc'.startswith('ab') | tojson }}{{ 'abc'.endswith('x') | tojson }}",
      "{{ missing | default('dflt') }} {{ [missing is defined, none is none, 3 is number, 'x' is string, obj "
      "is mapping,"
      " items is iterable, items is sequence, true is true, 0 is false, missing is undefined] | tojson }}",
      "{{ 7 // 2 }} {{ 7 / 2 }} {{ 7 % 3 }} {{ 2 ** 10 }} {{ -3 + 1.5 }} {{ 'a' ~ 1 ~ 2.5 }}",
      "{{ ['b' in 'abc', 2 in [1, 2], 'k' in obj, 'z' not in obj, 1 == 1.0] | tojson }}",
      "{%- if a -%}  A  {%- elif b -%} B {%- else -%} C {%- endif -%}!",
      "  {% if true %}\n    kept\n  {% endif %}\n{# comment #}\nend\n",
      "{{ items | first }} {{ items | last }} {{ 'Hello World' | lower }} {{ 'x' | upper }} {{ '  t  ' | "
      "trim }}",
      "{{ 'a\"b' | tojson }} {{ 'line\\nbreak\\ttab' | tojson }} {{ 0.5 | tojson }} {{ [1.25, -2] | tojson "
      "}}",
      "{{ x if x else 'no' }} {{ (1, 2) | length }} {{ {'a': 1}['a'] }} {{ obj.k }} {{ obj['k'] }}",
      "{% for i in items if i != 'b' %}{{ loop.index0 }}{{ i }}{% else %}empty{% endfor %}",
      "{% for i in [] %}x{% else %}empty{% endfor %} {{ 2.50 | string }} {{ 'A' ~ 7 }}",
      "{% for a in items %}{{ loop.previtem | default('^') }}{{ a }}{{ loop.nextitem | default('$') }} {% "
      "endfor %}",
  };
  std::vector<ordered_json> cases = {{{"items", {"a", "b", "c"}},
                                      {"obj", {{"k", "v"}, {"n", 1}, {"nested", {{"x", {1, 2}}}}}},
                                      {"word", "héllo"},
                                      {"a", false},
                                      {"b", true},
                                      {"x", 0}}};
  for (const auto& s : snippets) expect_same_rendering(s, cases, s);
}

// Where @huggingface/jinja (JavaScript values) and transformers (Python) disagree, we follow Python; the
// expected strings here are Python's documented str() / json.dumps / str.strip behaviour.
TEST(Template, PythonSemanticsWhereTheJavaScriptOracleDiffers) {
  Object vars = variables(ordered_json::parse(R"({"f": 0.0, "x": [1, "a", null, true], "d": {"k": "v"}})"));
  EXPECT_EQ(Template("{{ false }} {{ none | string }} {{ true | string }}", "t").render(vars),
            "False None True");
  EXPECT_EQ(Template("{{ f | tojson }} {{ f }} {{ 1e-05 }} {{ 1e16 }} {{ 0.1 + 0.2 }}", "t").render(vars),
            "0.0 0.0 1e-05 1e+16 0.30000000000000004");
  EXPECT_EQ(Template("{{ x }} {{ d }} {{ x | string }}", "t").render(vars),
            "[1, 'a', None, True] {'k': 'v'} [1, 'a', None, True]");
  EXPECT_EQ(Template("{{ 'xxhixx'.strip('x') }}|{{ '..a..'.lstrip('.') }}|{{ '..a..'.rstrip('.') }}", "t")
                .render(vars),
            "hi|a..|..a");
  EXPECT_EQ(
      Template("{{ 'a b  c'.split() | tojson }} {{ 'a,b,c'.split(',', 1) | tojson }}", "t").render(vars),
      "[\"a\", \"b\", \"c\"] [\"a\", \"b,c\"]");
}

TEST(Template, ErrorsNameTheTemplateLine) {
  Template raising("line one\n{{ raise_exception('boom') }}", "t.jinja");
  try {
    raising.render({});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("boom"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("t.jinja line 2"), std::string::npos) << e.what();
  }
  try {
    Template("a\nb\n{{ x | frobnicate }}", "f.jinja").render({});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown filter 'frobnicate'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("f.jinja line 3"), std::string::npos) << e.what();
  }
  try {
    Template("{% if x %}\n{% for %}", "s.jinja");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("s.jinja line 2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Template("{% if x %}never closed", "u.jinja"), Error);
  EXPECT_THROW(Template("{{ 'unterminated }}", "u.jinja"), Error);
}

}  // namespace
}  // namespace mtplx::jinja
