# cmake -DIN=page.html -DOUT=header.h -P embed.cmake: the page as a C++ string_view.
file(READ ${IN} content)
string(FIND "${content}" ")MPPAGE\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${IN} contains the raw-string delimiter )MPPAGE\"")
endif()
file(WRITE ${OUT} "#pragma once\n// Generated from aggregator/web/matrix_page.html by embed.cmake. Do not edit.\n#include <string_view>\nnamespace meshprobe::aggregator::web {\ninline constexpr std::string_view kMatrixPageHtml = R\"MPPAGE(${content})MPPAGE\";\n}\n")
