// A small logging facade (Abseil 20220623 has no absl/log). Lines go to stderr as
// "I20261203 15:04:05.123 file.cc:42] message"; the level threshold comes from ALIGN_LOG_LEVEL
// (debug, info, warning, error) or SetMinLogLevel.
#pragma once

#include <sstream>
#include <string_view>

namespace align {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3, kFatal = 4 };

void SetMinLogLevel(LogLevel level);
LogLevel MinLogLevel();
//! Parses "debug|info|warning|error"; returns false on anything else.
bool ParseLogLevel(std::string_view text, LogLevel* out);

namespace internal {
class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();  // writes the line; aborts for kFatal
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};
// Swallows the stream when the level is below the threshold.
struct LogVoidify {
  void operator&(std::ostream&) {}
};
}  // namespace internal
}  // namespace align

#define ALIGN_LOG_LEVEL_DEBUG ::align::LogLevel::kDebug
#define ALIGN_LOG_LEVEL_INFO ::align::LogLevel::kInfo
#define ALIGN_LOG_LEVEL_WARNING ::align::LogLevel::kWarning
#define ALIGN_LOG_LEVEL_ERROR ::align::LogLevel::kError
#define ALIGN_LOG_LEVEL_FATAL ::align::LogLevel::kFatal

// LibTorch's c10/util/Logging.h defines glog-style LOG and CHECK too; engine files include it first
// (through the precompiled torch header), and ours replace them there.
#ifdef LOG
#undef LOG
#endif
#ifdef CHECK
#undef CHECK
#endif

//! LOG(INFO) << "text"; levels DEBUG, INFO, WARNING, ERROR, FATAL.
#define LOG(level)                                                        \
  (ALIGN_LOG_LEVEL_##level < ::align::MinLogLevel())                      \
      ? (void)0                                                           \
      : ::align::internal::LogVoidify() &                                 \
            ::align::internal::LogMessage(ALIGN_LOG_LEVEL_##level, __FILE__, __LINE__).stream()

//! CHECK(cond): for invariants of our own code only, never for external input.
#define CHECK(cond) \
  (cond) ? (void)0  \
         : ::align::internal::LogVoidify() & \
               ::align::internal::LogMessage(::align::LogLevel::kFatal, __FILE__, __LINE__).stream() \
                   << "Check failed: " #cond " "
