"""Platform templates of the project API: host (native gcc), qemu (bare metal), zephyr."""
