package components

import (
	"github.com/pulumi/pulumi-tls/sdk/v5/go/tls"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/rabbitmq-ha/rabbitmq-ha/config"
	"github.com/rabbitmq-ha/rabbitmq-ha/plan"
)

// Key sizes. ECDSA P-256 and RSA 3072 are both above the ≥ 2048-bit RSA
// floor; 3072 matches P-256's strength (NIST SP 800-57).
const (
	ecdsaCurve = "P256"
	rsaBits    = 3072
	// caValidityFactor makes the CA outlive many server certificates, so a
	// renewal never changes the CA that clients trust.
	caValidityFactor = 10
)

// PKI is the stack's CA and HAProxy's server certificate.
type PKI struct {
	pulumi.ResourceState

	// CACertPEM is the CA certificate clients trust.
	CACertPEM pulumi.StringOutput `pulumi:"caCertPem"`
	// ServerPEM is HAProxy's crt bundle: certificate, CA, key. Secret.
	ServerPEM pulumi.StringOutput `pulumi:"serverPem"`
	// NodeCertPEM and NodeKeyPEM (secret) are the nodes' certificate and
	// key, on Swarm only: the Erlang distribution both ways, and the TLS
	// listeners HAProxy and consumers reach across hosts.
	NodeCertPEM, NodeKeyPEM pulumi.StringOutput
}

// NewPKI creates the CA and the server certificate it signs.
func NewPKI(ctx *pulumi.Context, name string, cfg *config.Config, opts ...pulumi.ResourceOption) (*PKI, error) {
	p := &PKI{}
	if err := ctx.RegisterComponentResource(typePrefix+"PKI", name, p, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(p)
	key := func(n string) (*tls.PrivateKey, error) {
		args := &tls.PrivateKeyArgs{Algorithm: pulumi.String(cfg.TLS.KeyAlgorithm)}
		if cfg.TLS.KeyAlgorithm == config.KeyRSA {
			args.RsaBits = pulumi.Int(rsaBits)
		} else {
			args.EcdsaCurve = pulumi.String(ecdsaCurve)
		}
		return tls.NewPrivateKey(ctx, n, args, parent)
	}
	caKey, err := key(name + "-ca-key")
	if err != nil {
		return nil, wrap("CA key", err)
	}
	ca, err := tls.NewSelfSignedCert(ctx, name+"-ca", &tls.SelfSignedCertArgs{
		PrivateKeyPem: caKey.PrivateKeyPem,
		Subject: tls.SelfSignedCertSubjectArgs{
			CommonName:   pulumi.String(cfg.Prefix + " CA"),
			Organization: pulumi.String("rabbitmq-ha"),
		},
		IsCaCertificate:     pulumi.Bool(true),
		SetSubjectKeyId:     pulumi.Bool(true),
		ValidityPeriodHours: pulumi.Int(cfg.TLS.ValidityHours * caValidityFactor),
		EarlyRenewalHours:   pulumi.Int(cfg.TLS.EarlyRenewalHours * caValidityFactor),
		AllowedUses:         pulumi.ToStringArray([]string{"cert_signing", "crl_signing", "digital_signature"}),
	}, parent)
	if err != nil {
		return nil, wrap("CA certificate", err)
	}
	serverKey, err := key(name + "-server-key")
	if err != nil {
		return nil, wrap("server key", err)
	}
	csr, err := tls.NewCertRequest(ctx, name+"-server-csr", &tls.CertRequestArgs{
		PrivateKeyPem: serverKey.PrivateKeyPem,
		Subject: tls.CertRequestSubjectArgs{
			CommonName:   pulumi.String(firstName(cfg)),
			Organization: pulumi.String("rabbitmq-ha"),
		},
		DnsNames:    pulumi.ToStringArray(cfg.TLS.DNSNames),
		IpAddresses: pulumi.ToStringArray(cfg.TLS.IPAddresses),
	}, parent)
	if err != nil {
		return nil, wrap("server CSR", err)
	}
	cert, err := tls.NewLocallySignedCert(ctx, name+"-server", &tls.LocallySignedCertArgs{
		CertRequestPem:      csr.CertRequestPem,
		CaPrivateKeyPem:     caKey.PrivateKeyPem,
		CaCertPem:           ca.CertPem,
		ValidityPeriodHours: pulumi.Int(cfg.TLS.ValidityHours),
		EarlyRenewalHours:   pulumi.Int(cfg.TLS.EarlyRenewalHours),
		AllowedUses:         pulumi.ToStringArray([]string{"digital_signature", "key_encipherment", "server_auth"}),
	}, parent)
	if err != nil {
		return nil, wrap("server certificate", err)
	}
	if cfg.IsSwarm() {
		nodeKey, err := key(name + "-node-key")
		if err != nil {
			return nil, wrap("node key", err)
		}
		names := plan.NodeCertificateOf(cfg)
		nodeCSR, err := tls.NewCertRequest(ctx, name+"-node-csr", &tls.CertRequestArgs{
			PrivateKeyPem: nodeKey.PrivateKeyPem,
			Subject: tls.CertRequestSubjectArgs{
				CommonName:   pulumi.String(plan.NodeNames(cfg.Prefix, 0).Container),
				Organization: pulumi.String("rabbitmq-ha"),
			},
			DnsNames:    pulumi.ToStringArray(names.DNSNames),
			IpAddresses: pulumi.ToStringArray(names.IPAddresses),
		}, parent)
		if err != nil {
			return nil, wrap("node CSR", err)
		}
		nodeCert, err := tls.NewLocallySignedCert(ctx, name+"-node", &tls.LocallySignedCertArgs{
			CertRequestPem:      nodeCSR.CertRequestPem,
			CaPrivateKeyPem:     caKey.PrivateKeyPem,
			CaCertPem:           ca.CertPem,
			ValidityPeriodHours: pulumi.Int(cfg.TLS.ValidityHours),
			EarlyRenewalHours:   pulumi.Int(cfg.TLS.EarlyRenewalHours),
			// Both ways: a node is the distribution's server and its client.
			AllowedUses: pulumi.ToStringArray([]string{"digital_signature", "key_encipherment", "server_auth", "client_auth"}),
		}, parent)
		if err != nil {
			return nil, wrap("node certificate", err)
		}
		p.NodeCertPEM = nodeCert.CertPem
		p.NodeKeyPEM = pulumi.ToSecret(nodeKey.PrivateKeyPem).(pulumi.StringOutput)
	}
	p.CACertPEM = ca.CertPem
	p.ServerPEM = pulumi.ToSecret(pulumi.All(cert.CertPem, ca.CertPem, serverKey.PrivateKeyPem).ApplyT(
		func(v []any) string { return v[0].(string) + v[1].(string) + v[2].(string) },
	)).(pulumi.StringOutput)
	return p, ctx.RegisterResourceOutputs(p, pulumi.Map{"caCertPem": p.CACertPEM, "serverPem": p.ServerPEM})
}

// firstName is the certificate's common name: its first SAN.
func firstName(cfg *config.Config) string {
	if len(cfg.TLS.DNSNames) > 0 {
		return cfg.TLS.DNSNames[0]
	}
	return cfg.TLS.IPAddresses[0]
}
