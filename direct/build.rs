// The module's link settings (packed relocations, gcc's unwinder linked
// in, NODELETE): the same reasons hold for a library loaded into sshd and
// sudo. One file, module/build.rs.

include!("../module/build.rs");
