# What `cmake --install` puts where. Three components, which `make package` turns into three
# Debian packages: "runtime" (the sluice command and its systemd units), "development" (the
# client library's headers and static libraries, a CMake package and a pkg-config file) and
# "examples" (the seed's Greeter server and client, for containers and trials).
include(CMakePackageConfigHelpers)

set(SLUICE_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/Sluice)
# Relative: under the prefix (/usr/lib/systemd/system for the package, which systemd reads).
set(SLUICE_SYSTEMD_DIR lib/systemd/system CACHE STRING "Where the systemd units install, below the prefix")

# The libraries a C++ program links to balance its own calls, as Sluice::<name>.
set(SLUICE_EXPORTED_LIBRARIES
  sluice_core:core sluice_grpc_util:grpc_util sluice_etcd_proto:etcd_proto sluice_etcd:etcd sluice_discovery:discovery
  sluice_registry:registry sluice_balancer:balancer sluice_health_proto:health_proto
  sluice_orca_proto:orca_proto sluice_health:health sluice_client:client)
set(SLUICE_EXPORTED_TARGETS)
foreach(pair ${SLUICE_EXPORTED_LIBRARIES})
  string(REPLACE ":" ";" parts ${pair})
  list(GET parts 0 target)
  list(GET parts 1 export_name)
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${export_name})
  list(APPEND SLUICE_EXPORTED_TARGETS ${target})
endforeach()

# A sanitized build's libraries need the sanitizer runtime in whatever links them.
set(SLUICE_PC_EXTRA_LIBS "")
if(SLUICE_SANITIZE)
  target_link_options(sluice_core INTERFACE
    $<INSTALL_INTERFACE:-fsanitize=${SLUICE_SANITIZE}>)
  set(SLUICE_PC_EXTRA_LIBS " -fsanitize=${SLUICE_SANITIZE}")
endif()

install(TARGETS ${SLUICE_EXPORTED_TARGETS} EXPORT SluiceTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT development
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
foreach(module core etcd discovery registry balancer health client)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/src/sluice/${module}/
    DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/sluice/${module} COMPONENT development
    FILES_MATCHING PATTERN "*.h")
endforeach()

install(EXPORT SluiceTargets NAMESPACE Sluice:: DESTINATION ${SLUICE_CMAKE_DIR}
  COMPONENT development)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/SluiceConfig.cmake.in
  ${PROJECT_BINARY_DIR}/SluiceConfig.cmake INSTALL_DESTINATION ${SLUICE_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/SluiceConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/SluiceConfig.cmake ${PROJECT_BINARY_DIR}/SluiceConfigVersion.cmake
  DESTINATION ${SLUICE_CMAKE_DIR} COMPONENT development)

# pkg-config: paths relative to the .pc file, so an install moved elsewhere (DESTDIR) still works.
file(RELATIVE_PATH SLUICE_PC_TO_PREFIX /${CMAKE_INSTALL_LIBDIR}/pkgconfig /)
configure_file(${PROJECT_SOURCE_DIR}/cmake/sluice.pc.in ${PROJECT_BINARY_DIR}/sluice.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/sluice.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig
  COMPONENT development)

install(TARGETS sluice RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime)
install(FILES ${PROJECT_SOURCE_DIR}/deploy/systemd/sluice-proxy.service
              ${PROJECT_SOURCE_DIR}/deploy/systemd/sluice-register@.service
  DESTINATION ${SLUICE_SYSTEMD_DIR} COMPONENT runtime)
# Starting points for /etc/sluice/ (the package's postinst copies them there when missing).
install(FILES ${PROJECT_SOURCE_DIR}/deploy/systemd/proxy.env
              ${PROJECT_SOURCE_DIR}/deploy/systemd/register-greeter.env
  DESTINATION ${CMAKE_INSTALL_DATADIR}/sluice/examples COMPONENT runtime)

install(TARGETS greeter_server greeter_client RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  COMPONENT examples)
