// The prebuilt addons @vring/core ships: the directory under packages/core/prebuilds/ (named
// <platform>-<arch>-<libc>, as the loader in packages/core/src/native-binding-loader.ts looks
// for it) and the Zig target that builds it. The glibc targets name glibc 2.28, the oldest
// glibc the prebuilds run on (Node 20's own floor).
export const PREBUILT_TARGETS = {
  'linux-x64-glibc': 'x86_64-linux-gnu.2.28',
  'linux-arm64-glibc': 'aarch64-linux-gnu.2.28',
  'linux-x64-musl': 'x86_64-linux-musl',
  'linux-arm64-musl': 'aarch64-linux-musl',
};

/** The glibc floor of the glibc targets, as `major.minor`. */
export const GLIBC_FLOOR = '2.28';
