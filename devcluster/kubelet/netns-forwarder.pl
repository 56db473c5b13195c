# Runs inside a pod's network namespace (started by the kubelet with nsenter, as an unprivileged
# user, dying with the kubelet). Perl, not Node: one per pod, and a Node process costs ~40 ms of
# CPU to start and ~40 MB to keep; this one costs a few ms and a few MB (perl-base is Essential on
# Debian: Socket and IO::Select only).
#
# Arguments: the pod IP, the kubelet's Unix socket (a host path: Unix socket paths are not bound to
# a network namespace), the egress port (0 = none).
# In: lines "ID PORT" on stdin: open a TCP connection to IP:PORT here, connect to the kubelet's
# socket, write the ID as 8 hex digits and a newline, then copy bytes both ways (one forked child
# per connection). Out (stdout lines): "ready", "fail ID" (nothing listens there),
# "egress-fail MESSAGE". With an egress port: a listener on 127.0.0.1:PORT whose every connection
# goes to the kubelet's socket under ID 0; the kubelet opens it to the egress proxy and nothing else.
# stdin closed = the kubelet let go: exit.
use strict;
use warnings;
use Socket qw(AF_INET AF_UNIX SOCK_STREAM IPPROTO_TCP TCP_NODELAY SHUT_WR
  inet_aton pack_sockaddr_in pack_sockaddr_un);
use IO::Select;

$SIG{CHLD} = 'IGNORE';    # children reaped by the kernel
$SIG{PIPE} = 'IGNORE';
my ($ip, $kubelet, $egress_port) = @ARGV;

sub say_line { syswrite(STDOUT, "$_[0]\n") }

# In the container's first seconds a refused connection is tried again for a while: its server is
# still starting, and the kubelet's first probe (period 1 s) would otherwise fail at once and wait
# a whole period (the Node forwarder this replaced took about as long to start as the server did).
my $young_until = time + 2;

sub tcp_to {
  my ($port) = @_;
  for (;;) {
    socket(my $s, AF_INET, SOCK_STREAM, IPPROTO_TCP) or return;
    setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
    return $s if connect($s, pack_sockaddr_in($port, inet_aton($ip)));
    return unless $!{ECONNREFUSED} && time < $young_until;
    close($s);
    select(undef, undef, undef, 0.02);
  }
}

sub to_kubelet {
  my ($id) = @_;
  socket(my $u, AF_UNIX, SOCK_STREAM, 0) or return;
  connect($u, pack_sockaddr_un($kubelet)) or return;
  syswrite($u, sprintf("%08x\n", $id)) == 9 or return;
  return $u;
}

# Both ways until both ends are done; an end that finishes sending is half-closed on the other.
sub splice_both {
  my ($a, $b) = @_;
  my %peer = (fileno($a) => $b, fileno($b) => $a);
  my $sel = IO::Select->new($a, $b);
  while ($sel->count) {
    for my $from ($sel->can_read) {
      my $n = sysread($from, my $buf, 65536);
      my $to = $peer{ fileno($from) };
      if (!$n) {
        exit 0 unless defined $n;    # an error: closing both resets nothing, ends both
        shutdown($to, SHUT_WR);
        $sel->remove($from);
        next;
      }
      my $off = 0;
      while ($off < $n) {
        my $w = syswrite($to, $buf, $n - $off, $off);
        exit 0 unless $w;
        $off += $w;
      }
    }
  }
  exit 0;
}

my $sel = IO::Select->new(\*STDIN);
my $egress;
if ($egress_port) {
  if (socket($egress, AF_INET, SOCK_STREAM, IPPROTO_TCP)
    && bind($egress, pack_sockaddr_in($egress_port, inet_aton('127.0.0.1')))
    && listen($egress, 128))
  {
    $sel->add($egress);
  } else {
    say_line("egress-fail $!");
    undef $egress;
  }
}
say_line('ready');

my $pending = '';
for (;;) {
  for my $fh ($sel->can_read) {
    if ($egress && $fh == $egress) {
      accept(my $c, $egress) or next;
      my $pid = fork;
      if (defined $pid && $pid == 0) {
        close(STDIN);
        my $u = to_kubelet(0) or exit 0;
        splice_both($c, $u);
      }
      close($c);
      next;
    }
    my $n = sysread(STDIN, my $buf, 4096);
    exit 0 unless $n;
    $pending .= $buf;
    while ($pending =~ s/^(\d+) (\d+)\n//) {
      my ($id, $port) = ($1, $2);
      my $pid = fork;
      next if !defined $pid || $pid > 0;
      close(STDIN);
      my $t = tcp_to($port);
      if (!$t) {
        say_line("fail $id");
        exit 0;
      }
      my $u = to_kubelet($id) or exit 0;
      splice_both($t, $u);
    }
  }
}
