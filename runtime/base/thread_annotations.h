// Clang's thread-safety annotations (https://clang.llvm.org/docs/ThreadSafetyAnalysis.html), as
// LevelDB and Abseil write them: which mutex guards a member (GUARDED_BY), which a method needs
// held (REQUIRES) or must not hold (EXCLUDES). The `tsa` preset (CMakePresets.json) builds with
// -Wthread-safety -Werror=thread-safety, so a broken rule fails the build; other compilers see
// nothing. Annotate with rt::Mutex / rt::SharedMutex (runtime/base/mutex.h): std::mutex carries no
// annotations in libstdc++, so the analysis cannot follow it.
#pragma once

#if defined(__clang__)
#define PR_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define PR_THREAD_ANNOTATION(x)
#endif

#define CAPABILITY(x) PR_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY PR_THREAD_ANNOTATION(scoped_lockable)
#define GUARDED_BY(x) PR_THREAD_ANNOTATION(guarded_by(x))
#define PT_GUARDED_BY(x) PR_THREAD_ANNOTATION(pt_guarded_by(x))
#define ACQUIRED_BEFORE(...) PR_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) PR_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
#define REQUIRES(...) PR_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) PR_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
#define ACQUIRE(...) PR_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) PR_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define RELEASE(...) PR_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) PR_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
#define RELEASE_GENERIC(...) PR_THREAD_ANNOTATION(release_generic_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) PR_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define EXCLUDES(...) PR_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) PR_THREAD_ANNOTATION(assert_capability(x))
#define RETURN_CAPABILITY(x) PR_THREAD_ANNOTATION(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS PR_THREAD_ANNOTATION(no_thread_safety_analysis)
