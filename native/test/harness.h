// A deliberately tiny test harness: the native tests must build with the system g++
// alone, under ASan/UBSan and TSan, with no third-party test framework.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "vring/error.h"

namespace harness {

struct TestCase {
  const char* name;
  std::function<void()> fn;
};

inline std::vector<TestCase>& Registry() {
  static std::vector<TestCase> tests;
  return tests;
}

struct Registrar {
  Registrar(const char* name, std::function<void()> fn) { Registry().push_back({name, std::move(fn)}); }
};

struct Failure {
  std::string message;
};

inline int RunAll() {
  int passed = 0, failed = 0;
  for (auto& t : Registry()) {
    try {
      t.fn();
      ++passed;
      std::printf("  ok   %s\n", t.name);
    } catch (const Failure& f) {
      ++failed;
      std::printf("  FAIL %s: %s\n", t.name, f.message.c_str());
    } catch (const vring::Error& e) {
      ++failed;
      std::printf("  FAIL %s: unexpected vring::Error %s: %s\n", t.name, vring::ErrorCodeName(e.code()),
                  e.what());
    } catch (const std::exception& e) {
      ++failed;
      std::printf("  FAIL %s: unexpected exception: %s\n", t.name, e.what());
    }
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}

// Runs `fn` and requires it to throw vring::Error with `code` and `reason` (nullptr: none);
// returns the error's message.
template <typename Fn>
std::string ExpectError(Fn&& fn, vring::ErrorCode code, const char* reason, const char* file, int line) {
  const auto describe = [](vring::ErrorCode c, const char* r) {
    return std::string(vring::ErrorCodeName(c)) + " (reason " + (r ? r : "none") + ")";
  };
  const std::string where = std::string(file) + ":" + std::to_string(line) + ": expected " + describe(code, reason);
  try {
    fn();
  } catch (const vring::Error& e) {
    const bool same_reason = reason ? e.reason() && std::strcmp(e.reason(), reason) == 0 : !e.reason();
    if (e.code() != code || !same_reason)
      throw Failure{where + ", got " + describe(e.code(), e.reason()) + ": " + e.what()};
    return e.what();
  }
  throw Failure{where + ", nothing thrown"};
}

}  // namespace harness

#define HARNESS_CAT2(a, b) a##b
#define HARNESS_CAT(a, b) HARNESS_CAT2(a, b)
#define TEST(name)                                                                   \
  static void name();                                                                \
  static harness::Registrar HARNESS_CAT(registrar_, name)(#name, name);             \
  static void name()

#define EXPECT(cond)                                                                       \
  do {                                                                                     \
    if (!(cond))                                                                           \
      throw harness::Failure{std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": " \
                             "expected " #cond};                                           \
  } while (0)

#define EXPECT_EQ(a, b)                                                                    \
  do {                                                                                     \
    auto va_ = (a);                                                                        \
    auto vb_ = (b);                                                                        \
    if (!(va_ == vb_))                                                                     \
      throw harness::Failure{std::string(__FILE__) + ":" + std::to_string(__LINE__) +      \
                             ": expected " #a " == " #b " (" + std::to_string(va_) +       \
                             " vs " + std::to_string(vb_) + ")"};                          \
  } while (0)

// Runs `stmt` and requires it to throw vring::Error with the given code.
#define EXPECT_THROWS_CODE(stmt, expected_code)                                              \
  do {                                                                                       \
    bool thrown_ = false;                                                                    \
    try {                                                                                    \
      stmt;                                                                                  \
    } catch (const vring::Error& e_) {                                                       \
      thrown_ = true;                                                                        \
      if (e_.code() != (expected_code))                                                      \
        throw harness::Failure{std::string(__FILE__) + ":" + std::to_string(__LINE__) +      \
                               ": wrong code " + vring::ErrorCodeName(e_.code()) + ": " +   \
                               e_.what()};                                                   \
    }                                                                                        \
    if (!thrown_)                                                                            \
      throw harness::Failure{std::string(__FILE__) + ":" + std::to_string(__LINE__) +        \
                             ": expected " #stmt " to throw " #expected_code};               \
  } while (0)

// Runs `stmt` and requires it to throw vring::Error with the given code and reason.
#define EXPECT_ERROR(stmt, code, reason) harness::ExpectError([&] { stmt; }, code, reason, __FILE__, __LINE__)
