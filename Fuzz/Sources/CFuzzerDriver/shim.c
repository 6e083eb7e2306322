// Empty: SwiftPM needs a source file in a C target. The symbol comes from libFuzzer, linked by
// `-sanitize=fuzzer`.
#include "CFuzzerDriver.h"
