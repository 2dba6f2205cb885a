#!/usr/bin/perl
# sa_hits.pl - run SpamAssassin (Debian's, with its stock rules in
# /usr/share/spamassassin and the plugins /etc/spamassassin loads) over
# message files with network tests, Bayes and auto-welcomelist off; print
# "FILE<TAB>RULE,RULE,..." per message (the rules that hit).
use strict;
use warnings;
use Mail::SpamAssassin;

my $rules = shift @ARGV or die "usage: sa_hits.pl RULES_DIR FILE...\n";
my $sa = Mail::SpamAssassin->new({
	rules_filename      => $rules,
	site_rules_filename => '/etc/spamassassin',
	userprefs_filename  => '/dev/null',
	dont_copy_prefs     => 1,
	local_tests_only    => 1,
	post_config_text    => "use_bayes 0\nuse_auto_whitelist 0\nbayes_auto_learn 0\nskip_rbl_checks 1\n",
});
$sa->compile_now(0);
for my $f (@ARGV) {
	open(my $fh, '<', $f) or die "$f: $!\n";
	my @lines = <$fh>;
	close $fh;
	my $msg = $sa->parse(\@lines);
	my $st = $sa->check($msg);
	print "$f\t", $st->get_names_of_tests_hit(), "\n";
	$st->finish;
	$msg->finish;
}
