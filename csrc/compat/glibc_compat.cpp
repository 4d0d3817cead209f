// Linked only into builds against older glibc stubs (LATENTOPS_GLIBC_STUBS, the wheels; see
// packaging/glibc_stubs.py): what this machine's headers make the code reference that the older
// glibc lacks, supplied here. The link redirects each such reference with -Wl,--wrap=<symbol>.
#include <unistd.h>  // getentropy (glibc 2.25)

#include <cstdlib>

extern "C" {

// libstdc++'s headers (GCC >= 11 on glibc >= 2.32) read glibc's __libc_single_threaded to skip
// atomic reference counts while a process has one thread. glibc 2.28 has no such variable; 0 says
// "other threads may exist", which is always correct (the counts stay atomic).
char __wrap___libc_single_threaded = 0;

// The static libstdc++ (cow-string-inst.o drags in random.o) references arc4random (glibc 2.36)
// for std::random_device("default"), which latentops never constructs; getentropy draws the same
// kernel randomness.
unsigned int __wrap_arc4random(void) {
  unsigned int value;
  if (getentropy(&value, sizeof value) != 0) std::abort();
  return value;
}

}  // extern "C"
