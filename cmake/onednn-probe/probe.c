/* Links against oneDNN's C API: the headers and the library both work. */
#include <dnnl.h>

int main(void) {
  const dnnl_version_t *v = dnnl_version();
  return v->major > 0 ? 0 : 1;
}
