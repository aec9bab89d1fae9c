// What a native entry point calls back into during prn_init() and prn_run(): the entry-script log
// (ctx->log) and the message of the current call (ctx->set_error, result->set_error). Both may be
// called from any of the library's threads.
#pragma once

#include <string>

namespace parallelrun::rt::native {

// Where ctx->log writes: <log_dir>/user/entry_script_log/<node>/<process>.log.txt (created on first
// use), and the lowest PRN_LOG_* level written. Call once, before the library is loaded.
void ConfigureEntryLog(std::string path, int level);

// ctx->log: one line in the entry-script log, in the line format of the Python host's
// EntryScript().logger.
void LogCallback(int level, const char* message);

// ctx->set_error and result->set_error: the message for the current call (the last one wins).
void SetErrorCallback(const char* message);
void ResultSetErrorCallback(void* host, const char* message);

// Forgets the message, before each call into the library.
void ClearError();
// The message of the call just made; false when the library gave none.
bool TakeError(std::string* message);

}  // namespace parallelrun::rt::native
