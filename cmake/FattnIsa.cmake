# fattn_add_isa(NAME FLAGS DEFINE): builds kernels/NAME/*.c as an object library
# with its own ISA flags (never -march=native), adds it to the library, and
# defines DEFINE for the framework so dispatch lists the table. A folder that
# has no kernels yet adds nothing.
function(fattn_add_isa name flags define)
  file(GLOB srcs CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/kernels/${name}/*.c)
  if(NOT srcs)
    return()
  endif()
  add_library(fattn_${name} OBJECT ${srcs})
  target_compile_options(fattn_${name} PRIVATE ${flags})
  set(FATTN_OBJECT_LIBS ${FATTN_OBJECT_LIBS} fattn_${name} PARENT_SCOPE)
  set(FATTN_ISAS ${FATTN_ISAS} ${name} PARENT_SCOPE)
  set(FATTN_ISA_DEFINES ${FATTN_ISA_DEFINES} ${define}=1 PARENT_SCOPE)
endfunction()
