# worker.cmake (included by gpu-worker/CMakeLists.txt): the backend registry, the engine and
# nosa-generate. The nosa-worker process itself is in worker/.

# nosa_backend_registry: nosa_backend_find over the backends built here.
add_library(nosa_backend_registry STATIC ${CMAKE_CURRENT_SOURCE_DIR}/backend.c)
target_include_directories(nosa_backend_registry PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(nosa_backend_registry PUBLIC nosa_backend_cpu nosa_common)
if(NOSA_HAVE_CUDA AND TARGET nosa_backend_cuda)
  target_link_libraries(nosa_backend_registry PUBLIC nosa_backend_cuda CUDA::cudart)
endif()

# nosa_engine: continuous batching, sampling, block tables (engine/engine.h, docs/ENGINE.md).
add_library(nosa_engine STATIC
  ${CMAKE_CURRENT_SOURCE_DIR}/engine/engine.c
  ${CMAKE_CURRENT_SOURCE_DIR}/engine/sampler.c
  ${CMAKE_CURRENT_SOURCE_DIR}/engine/local_blocks.c
  ${CMAKE_CURRENT_SOURCE_DIR}/engine/text_json.c)
target_include_directories(nosa_engine PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/engine
                           ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(nosa_engine PUBLIC nosa_backend_registry nosa_backend_checks nosa_model
                      nosa_common m)

# nosa-generate: the single-process reference decode the end-to-end tests compare against.
add_executable(nosa-generate ${CMAKE_CURRENT_SOURCE_DIR}/generate_main.c)
target_link_libraries(nosa-generate PRIVATE nosa_engine PkgConfig::CJSON)
