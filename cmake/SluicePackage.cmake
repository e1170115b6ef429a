# `make package` (cpack -G DEB): two Debian packages from the install components.
#   sluice          the sluice command and its systemd units; depends on Debian's runtime
#                   libraries (found by dpkg-shlibdeps from what the binary links).
#   libsluice-dev   headers, static libraries, CMake package and pkg-config file; depends on the
#                   Debian -dev packages a program linking the library needs.
#   sluice-examples the seed's Greeter server and client (the Greeter container image).
set(CPACK_PACKAGE_NAME sluice)
set(CPACK_PACKAGE_VENDOR "Sluice")
set(CPACK_PACKAGE_CONTACT "Sluice maintainers <sluice@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Per-call gRPC load balancing with an etcd service registry")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_GENERATOR DEB)
# Packages hold binaries without debug info; `make package` has built everything already, so
# cpack only installs (it does not rebuild every test first).
set(CPACK_STRIP_FILES ON)
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY TRUE)
set(CPACK_DEBIAN_COMPRESSION_TYPE gzip)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL runtime development examples)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)

set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME sluice)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_RECOMMENDS "etcd-server, etcd-client")
set(CPACK_DEBIAN_RUNTIME_PACKAGE_CONTROL_EXTRA ${PROJECT_SOURCE_DIR}/deploy/debian/postinst)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_COMPONENT_RUNTIME_DESCRIPTION
  "sluice: the command (proxy, register, ls, bench) and its systemd units")

set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_NAME libsluice-dev)
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_DEPENDS
  "libgrpc++-dev, libprotobuf-dev, protobuf-compiler-grpc, libabsl-dev, nlohmann-json3-dev")
set(CPACK_COMPONENT_DEVELOPMENT_DESCRIPTION
  "Sluice client library: headers, static libraries, CMake package and pkg-config file")

set(CPACK_DEBIAN_EXAMPLES_PACKAGE_NAME sluice-examples)
set(CPACK_DEBIAN_EXAMPLES_PACKAGE_SHLIBDEPS ON)
set(CPACK_COMPONENT_EXAMPLES_DESCRIPTION "Sluice examples: the Greeter server and client")

include(CPack)
