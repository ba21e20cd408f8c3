// Recursive-descent parser for the Jinja2 subset used by chat templates.
#pragma once

#include <string>
#include <string_view>

#include "text/jinja/ast.h"

namespace mtplx::jinja {

// Parses a template; syntax errors throw mtplx::Error naming `name` and the template line.
Body parse(std::string_view source, std::string_view name);

}  // namespace mtplx::jinja
