mount --make-rprivate /
mount --bind /tmp/b8/pam.d /etc/pam.d
mount --bind /tmp/b8/bundle.crt /etc/ssl/certs/ca-certificates.crt
valgrind --tool=callgrind --callgrind-out-file=/tmp/b8/cg.tls pamtester b-tls root authenticate < /tmp/b8/codes 2>/tmp/b8/vg.tls.err >/dev/null
