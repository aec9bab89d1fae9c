// The text of `logs/readme.txt`: what each file of the log tree is for (SPEC.md §5), so a user
// who opens the folder knows where to look first.
#pragma once

#include <string>

namespace parallelrun::rt {

std::string LogsReadmeText();

}  // namespace parallelrun::rt
