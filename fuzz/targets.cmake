# targets.cmake: the fuzz targets and how each one is built, shared by fuzz/CMakeLists.txt
# (libFuzzer binaries fuzz_<name>, NOSA_FUZZ=ON) and tests/regress/CMakeLists.txt (replay
# binaries fuzz_<name>_replay that run saved inputs through the same code in every build).
# Each target is fuzz/<name>.c defining LLVMFuzzerTestOneInput; its seeds are fuzz/corpus/<name>/.
set(NOSA_FUZZ_DIR ${CMAKE_CURRENT_LIST_DIR})
set(NOSA_FUZZ_PROTO_TARGETS kvh_request kvh_reply worker_msg coord_msg client_msg client_reply)
set(NOSA_FUZZ_TARGETS ${NOSA_FUZZ_PROTO_TARGETS} safetensors config_json)

# Adds executable exe running fuzz target name; ARGN: further sources (the replay main).
function(nosa_fuzz_add_executable name exe)
  add_executable(${exe} ${NOSA_FUZZ_DIR}/${name}.c ${NOSA_FUZZ_DIR}/fuzz_fail.c ${ARGN})
  target_include_directories(${exe} PRIVATE ${NOSA_FUZZ_DIR})
  if(name IN_LIST NOSA_FUZZ_PROTO_TARGETS)
    target_sources(${exe} PRIVATE ${NOSA_FUZZ_DIR}/fuzz_proto.c)
    target_link_libraries(${exe} PRIVATE nosa_proto nosa_msg)
  else()
    # White-box: the config target reaches the in-memory loader through model_internal.h.
    target_include_directories(${exe} PRIVATE ${PROJECT_SOURCE_DIR}/gpu-worker/model)
    target_link_libraries(${exe} PRIVATE nosa_model)
  endif()
endfunction()
