extern "C" int framex_tests_not_a_plugin() { return 42; }
