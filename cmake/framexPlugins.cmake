# framex_add_plugin(NAME SOURCES...): builds a plugin as a shared library
# (NAME.so, loaded by `load_plugins = ["/path/to/NAME.so"]`). It compiles
# against framex's headers and takes framex itself from the program that
# loads it, which must be a plugin host (below).
#
# framex_plugin_host(TARGET): lets the program TARGET load such plugins: it
# exports its symbols (so a plugin's calls reach this program's framex, its
# runtime and its plugins) and links the whole of framex.
function(framex_add_plugin name)
  add_library(${name} MODULE ${ARGN})
  set_target_properties(${name} PROPERTIES PREFIX "" CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN OFF)
  target_compile_definitions(${name} PRIVATE FRAMEX_PLUGIN_SHARED_LIBRARY
    $<TARGET_PROPERTY:framex::framex,INTERFACE_COMPILE_DEFINITIONS>)
  target_include_directories(${name} PRIVATE $<TARGET_PROPERTY:framex::framex,INTERFACE_INCLUDE_DIRECTORIES>)
  target_compile_features(${name} PRIVATE cxx_std_20)
  target_link_libraries(${name} PRIVATE Boost::headers Threads::Threads)
endfunction()

function(framex_plugin_host target)
  set_target_properties(${target} PROPERTIES ENABLE_EXPORTS ON)
  target_link_libraries(${target} PRIVATE framex::framex)
  target_link_options(${target} PRIVATE "LINKER:--whole-archive" "$<TARGET_FILE:framex::framex>" "$<TARGET_FILE:framex::net>"
                      "LINKER:--no-whole-archive")
endfunction()
