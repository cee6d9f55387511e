# Compiler launcher and warnings shared by every target.
find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM)
  # Sloppiness lets ccache cache translation units built with the engine's precompiled header.
  set(_launcher ${CMAKE_COMMAND} -E env
      "CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime"
      "CCACHE_BASEDIR=${CMAKE_SOURCE_DIR}" ${CCACHE_PROGRAM})
  set(CMAKE_CXX_COMPILER_LAUNCHER ${_launcher})
  set(CMAKE_C_COMPILER_LAUNCHER ${_launcher})
endif()

set(ALIGN_WARNINGS -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers
    -Werror=unused-result -Werror=return-type)
if(ALIGN_WERROR)
  list(APPEND ALIGN_WARNINGS -Werror)
endif()

# align_target_defaults(target): warnings and include root for our own code.
function(align_target_defaults target)
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${ALIGN_WARNINGS}>)
  target_include_directories(${target} PUBLIC ${CMAKE_SOURCE_DIR})
endfunction()

# align_component(LIB name EXE exe MAIN main.cc DEPS ...): a library from every *.cc in the
# current folder except *_main.cc, and a thin executable around MAIN. Subfolders listed in SUBDIRS
# contribute their *.cc to the library too.
function(align_component)
  cmake_parse_arguments(ARG "" "LIB;EXE;MAIN" "DEPS;SUBDIRS" ${ARGN})
  file(GLOB _srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cc)
  foreach(_d IN LISTS ARG_SUBDIRS)
    file(GLOB _more CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${_d}/*.cc)
    list(APPEND _srcs ${_more})
  endforeach()
  list(FILTER _srcs EXCLUDE REGEX "_main\\.cc$")
  if(_srcs)
    add_library(${ARG_LIB} ${_srcs})
    align_target_defaults(${ARG_LIB})
    target_link_libraries(${ARG_LIB} PUBLIC ${ARG_DEPS})
  else()
    add_library(${ARG_LIB} INTERFACE)
    target_include_directories(${ARG_LIB} INTERFACE ${CMAKE_SOURCE_DIR})
    target_link_libraries(${ARG_LIB} INTERFACE ${ARG_DEPS})
  endif()
  if(ARG_EXE)
    add_executable(${ARG_EXE} ${ARG_MAIN})
    align_target_defaults(${ARG_EXE})
    target_link_libraries(${ARG_EXE} PRIVATE ${ARG_LIB})
  endif()
endfunction()
