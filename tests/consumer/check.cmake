# Installs framex from FRAMEX_BUILD into a scratch prefix, then builds and runs
# the consumer project twice: against the installed package (find_package) and
# against the source tree (add_subdirectory).
file(REMOVE_RECURSE ${WORK})

function(run_step)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGV}\n${out}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

function(check_consumer name)
  set(build ${WORK}/${name})
  run_step(${CMAKE_COMMAND} -S ${CONSUMER} -B ${build} -G Ninja -DCMAKE_BUILD_TYPE=Release
           -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_CXX_COMPILER_LAUNCHER=${LAUNCHER} ${ARGN})
  run_step(${CMAKE_COMMAND} --build ${build})
  run_step(${build}/consumer)
  if(NOT last_output MATCHES "consumer got 42")
    message(FATAL_ERROR "${name}: unexpected output: ${last_output}")
  endif()
  message(STATUS "${name}: ${last_output}")
endfunction()

run_step(${CMAKE_COMMAND} --install ${FRAMEX_BUILD} --prefix ${WORK}/prefix)
if(NOT EXISTS ${WORK}/prefix/include/framex/framex.hpp OR NOT EXISTS ${WORK}/prefix/lib/cmake/framex/framexConfig.cmake)
  message(FATAL_ERROR "the install tree lacks the headers or the package config")
endif()
check_consumer(find_package -DCMAKE_PREFIX_PATH=${WORK}/prefix)
# framex's sources built with this build's flags: the compiler cache serves
# the objects it already made, instead of compiling the library again.
check_consumer(add_subdirectory -DFRAMEX_SOURCE_DIR=${FRAMEX_SOURCE} -DFRAMEX_WARNINGS_AS_ERRORS=${WARNINGS_AS_ERRORS})
