// libFuzzer's driver as a function (compiler-rt FuzzerInterface.h), so that a Swift executable
// can run it from its own `main`: SwiftPM renames an executable's `main`, and libFuzzer's `main`
// would otherwise be shadowed.
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv,
                        int (*UserCb)(const uint8_t *Data, size_t Size));
