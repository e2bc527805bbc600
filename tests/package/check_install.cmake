# Installs slim into WORK_DIR/prefix, then configures, builds and runs tests/package/consumer
# against the installed copy with find_package(slim). Any failing step fails the test.
file(REMOVE_RECURSE ${WORK_DIR})
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "step failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
endfunction()
run(${CMAKE_COMMAND} -S ${SLIM_SOURCE_DIR} -B ${WORK_DIR}/slim-build
    -DCMAKE_INSTALL_PREFIX=${WORK_DIR}/prefix -DSLIM_BUILD_TESTS=OFF
    -DSLIM_BUILD_BENCHMARKS=OFF -DSLIM_BUILD_EXAMPLES=OFF -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER})
run(${CMAKE_COMMAND} --install ${WORK_DIR}/slim-build)
run(${CMAKE_COMMAND} -S ${SLIM_SOURCE_DIR}/tests/package/consumer -B ${WORK_DIR}/consumer-build
    -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer-build)
run(${WORK_DIR}/consumer-build/consumer)
