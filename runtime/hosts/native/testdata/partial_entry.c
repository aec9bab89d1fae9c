/* Broken native entry points for runtime/worker/native_worker_test.cc, one per PRN_TEST_VARIANT.
 * Plain C, which also proves that parallelrun_native.h is valid C. */
#include "parallelrun_native.h"

#if PRN_TEST_VARIANT == 1 /* no prn_abi_version: not an entry point at all */
int prn_run(const prn_batch* batch, prn_result* result) {
  (void)batch;
  (void)result;
  return 0;
}
#elif PRN_TEST_VARIANT == 2 /* no prn_run */
int prn_abi_version(void) { return PRN_ABI_VERSION; }
#elif PRN_TEST_VARIANT == 3 /* built for another ABI version */
int prn_abi_version(void) { return 99; }
int prn_run(const prn_batch* batch, prn_result* result) {
  (void)batch;
  (void)result;
  return 0;
}
#elif PRN_TEST_VARIANT == 4 /* a symbol nothing defines: dlopen(RTLD_NOW) must refuse it */
void prn_test_undefined_function(void);
int prn_abi_version(void) { return PRN_ABI_VERSION; }
int prn_run(const prn_batch* batch, prn_result* result) {
  (void)batch;
  (void)result;
  prn_test_undefined_function();
  return 0;
}
#else
#error "define PRN_TEST_VARIANT"
#endif
