// A parsed Jinja template and its renderer: the subset of Jinja2 that Hugging Face chat templates use,
// rendered the way transformers renders them (Python semantics for values, tojson like json.dumps).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "text/jinja/ast.h"
#include "text/jinja/value.h"

namespace mtplx::jinja {

class Template {
 public:
  // Throws mtplx::Error ("template syntax error ... <name> line N") for malformed templates.
  Template(std::string_view source, std::string name);

  // Renders with the given variables. raise_exception(), unknown filters or tests and type errors throw
  // mtplx::Error naming the template line.
  std::string render(const Object& variables) const;

 private:
  std::string name_;
  std::shared_ptr<const Body> body_;
};

}  // namespace mtplx::jinja
