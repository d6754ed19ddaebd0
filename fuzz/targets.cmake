# targets.cmake: the fuzz targets and how each one is built, shared by fuzz/CMakeLists.txt
# (libFuzzer binaries fuzz_<name>, NOSA_FUZZ=ON) and tests/regress/CMakeLists.txt (replay
# binaries fuzz_<name>_replay that run saved inputs through the same code in every build).
# Each target is fuzz/<name>.c defining LLVMFuzzerTestOneInput; its seeds are fuzz/corpus/<name>/.
set(NOSA_FUZZ_DIR ${CMAKE_CURRENT_LIST_DIR})
set(NOSA_FUZZ_PROTO_TARGETS kvh_request kvh_reply worker_msg coord_msg client_msg client_reply)
set(NOSA_FUZZ_TARGETS ${NOSA_FUZZ_PROTO_TARGETS} safetensors config_json cli coord_journal
    daemon_args)

# The libraries each target tests: the decoder (nosa_msg) plus the receiver's validator for the
# protobuf targets whose receiver has one (fuzz/<name>.c passes it to nosa_fuzz_proto).
set(NOSA_FUZZ_LIBS_kvh_request nosa_msg nosa_proto nosa_kvh_validate)
set(NOSA_FUZZ_LIBS_kvh_reply nosa_msg nosa_proto)
set(NOSA_FUZZ_LIBS_worker_msg nosa_msg nosa_proto nosa_coord)
set(NOSA_FUZZ_LIBS_coord_msg nosa_msg nosa_proto nosa_worker_link)
set(NOSA_FUZZ_LIBS_client_msg nosa_msg nosa_proto nosa_coord)
set(NOSA_FUZZ_LIBS_client_reply nosa_msg nosa_proto)
set(NOSA_FUZZ_LIBS_safetensors nosa_model)
set(NOSA_FUZZ_LIBS_config_json nosa_model)
set(NOSA_FUZZ_LIBS_cli nosa_cli_args)
set(NOSA_FUZZ_LIBS_coord_journal nosa_coord)
set(NOSA_FUZZ_LIBS_daemon_args nosa_coord_flags nosa_kvh_server nosa_worker_link)

# Adds executable exe running fuzz target name; ARGN: further sources (the replay main).
function(nosa_fuzz_add_executable name exe)
  add_executable(${exe} ${NOSA_FUZZ_DIR}/${name}.c ${NOSA_FUZZ_DIR}/fuzz_fail.c ${ARGN})
  target_include_directories(${exe} PRIVATE ${NOSA_FUZZ_DIR})
  target_link_libraries(${exe} PRIVATE ${NOSA_FUZZ_LIBS_${name}})
  if(name IN_LIST NOSA_FUZZ_PROTO_TARGETS)
    target_sources(${exe} PRIVATE ${NOSA_FUZZ_DIR}/fuzz_proto.c)
  elseif(name MATCHES "^(cli|daemon_args)$")
    target_sources(${exe} PRIVATE ${NOSA_FUZZ_DIR}/fuzz_argv.c)
  elseif(name MATCHES "^(safetensors|config_json)$")
    # White-box: the config target reaches the in-memory loader through model_internal.h.
    target_include_directories(${exe} PRIVATE ${PROJECT_SOURCE_DIR}/gpu-worker/model)
  endif()
endfunction()
