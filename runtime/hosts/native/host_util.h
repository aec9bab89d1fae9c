// Small helpers of the native host: its environment, CPU time, the trimming of messages sent to the
// agent, and whole writes to a file descriptor.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace parallelrun::rt::native {

inline constexpr size_t kMaxDetail = 64 * 1024;  // longest detail sent back in a reply
inline constexpr size_t kMaxErrorLine = 1000;    // longest one-line error

// The variable's value, or `fallback` when it is unset or empty.
std::string Env(const char* name, const char* fallback);

// CPU seconds (user + system) of this process and its waited-for children.
double CpuNow();

// `x` rounded to microseconds, as the Python host reports times.
double Round6(double x);

// The first line of `text`, cut to kMaxErrorLine characters.
std::string FirstLine(const std::string& text);

// `text` cut to kMaxDetail characters: its head and tail, with the count of what was left out.
std::string Truncate(const std::string& text);

// strerror(e).
std::string Errno(int e);

// Writes all of `data` to `fd`; false (errno set) on failure.
bool WriteAll(int fd, std::string_view data);

}  // namespace parallelrun::rt::native
