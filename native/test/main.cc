#include "harness.h"

int main() { return harness::RunAll(); }
