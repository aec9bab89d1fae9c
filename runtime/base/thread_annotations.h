// Clang thread-safety annotations (-Wthread-safety), named as Abseil's and clang's documentation
// name them. They expand to nothing for other compilers.
//
//   Mutex mu_;
//   int count_ GUARDED_BY(mu_);
//   void AddLocked() REQUIRES(mu_);
//
// The checked mutex type is runtime/base/mutex.h's Mutex (libstdc++'s std::mutex carries no
// annotations, so clang cannot check members guarded by one).
#pragma once

#if defined(__clang__)
#define PR_THREAD_ANNOTATION_(x) __attribute__((x))
#else
#define PR_THREAD_ANNOTATION_(x)
#endif

#define CAPABILITY(x) PR_THREAD_ANNOTATION_(capability(x))
#define SCOPED_CAPABILITY PR_THREAD_ANNOTATION_(scoped_lockable)
#define GUARDED_BY(x) PR_THREAD_ANNOTATION_(guarded_by(x))
#define PT_GUARDED_BY(x) PR_THREAD_ANNOTATION_(pt_guarded_by(x))
#define REQUIRES(...) PR_THREAD_ANNOTATION_(requires_capability(__VA_ARGS__))
#define EXCLUDES(...) PR_THREAD_ANNOTATION_(locks_excluded(__VA_ARGS__))
#define ACQUIRE(...) PR_THREAD_ANNOTATION_(acquire_capability(__VA_ARGS__))
#define RELEASE(...) PR_THREAD_ANNOTATION_(release_capability(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) PR_THREAD_ANNOTATION_(assert_capability(x))
#define NO_THREAD_SAFETY_ANALYSIS PR_THREAD_ANNOTATION_(no_thread_safety_analysis)
