# The one helper for our targets. Warnings are errors for our code only (third-party headers are
# included as SYSTEM by their imported targets).
#
#   pr_library(NAME SOURCES a.cc b.cc DEPS other_lib ...)
#   pr_test(NAME SOURCES a_test.cc DEPS lib ...)        # GoogleTest + GoogleMock, registered in CTest
#   pr_executable(NAME SOURCES main.cc DEPS lib ...)    # lands in build/bin/

# -Werror covers -Wunused-result: an ignored Status/StatusOr ([[nodiscard]]) fails the build; drop
# one on purpose with .IgnoreError("why").
set(PARALLELRUN_WARNINGS -Wall -Wextra -Werror -Wno-missing-field-initializers)

function(_pr_common target)
  target_compile_options(${target} PRIVATE ${PARALLELRUN_WARNINGS})
  target_include_directories(${target} PUBLIC ${PROJECT_SOURCE_DIR})
endfunction()

function(pr_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  _pr_common(${name})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
endfunction()

function(pr_executable name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  _pr_common(${name})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
endfunction()

function(pr_test name)
  if(NOT PARALLELRUN_BUILD_TESTS)
    return()
  endif()
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  _pr_common(${name})
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gmock_main)
  target_compile_definitions(${name} PRIVATE
    PARALLELRUN_SOURCE_DIR="${PROJECT_SOURCE_DIR}" PARALLELRUN_BINARY_DIR="${CMAKE_BINARY_DIR}")
  gtest_discover_tests(${name} DISCOVERY_MODE PRE_TEST DISCOVERY_TIMEOUT 60
    PROPERTIES LABELS unit)
endfunction()
